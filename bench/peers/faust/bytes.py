"""Prints the changelog bytes Faust writes for table keys and values.

Calls faust-streaming's own serializer registry the way a Table's
_send_changelog does: dumps_key/dumps_value with the table's key and value
types and its "json" serializers (faust/tables/base.py). These are the
byte strings tests/unit/state/test_faust.c checks mephisto's format=faust
against (run: bench/peers/.venv/bin/python bench/peers/faust/bytes.py).
"""
import faust
from faust.types.windows import WindowRange_from_start

app = faust.App("bytes", broker="kafka://127.0.0.1:1", web_enabled=False)
reg = app.serializers


class PageView(faust.Record, namespace="pageviews.PageView"):
    user: str
    page: str


def show(what, b):
    print(f"{what:<28} {b!r}")


win = WindowRange_from_start(float(1700000040), 60.0)
show("bytes key", reg.dumps_key(bytes, b"hello", serializer="json"))
show("int value", reg.dumps_value(int, 3, serializer="json"))
show("str key", reg.dumps_key(str, "caf\u00e9", serializer="json"))
show("str value", reg.dumps_value(str, 'a"b\n', serializer="json"))
show("windowed str key", reg.dumps_key(str, ("/home", win), serializer="json"))
show("windowed negative", reg.dumps_key(
    str, ("k", WindowRange_from_start(-60.0, 60.0)), serializer="json"))
show("record value", reg.dumps_value(
    PageView, PageView(user="u1", page="/a"), serializer="json"))
show("read str key", reg.loads_key(str, b'"caf\\u00e9"', serializer="json"))
show("read int value", reg.loads_value(int, b"3", serializer="json"))
