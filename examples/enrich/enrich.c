/*
 * Stream enrichment from a global table: orders get their product's name.
 *
 * Contract (so anyone can drive it):
 *   products  topic `enrich-products` (setting enrich.products_topic):
 *             key = product id, value = product name (UTF-8); an empty
 *             value removes the product. Each record is written to the
 *             global table `products` (changelog
 *             `<app_id>-products-changelog`), whose whole content every
 *             process holds in memory.
 *   orders    topic `enrich-orders` (setting enrich.orders_topic): JSON
 *             objects with a string field "product", e.g.
 *             {"order": "o-1", "product": "p-42", "qty": 3}
 *   output    topic `enrich-orders-enriched` (setting enrich.output_topic),
 *             keyed like the order: {"order": <the order as received>,
 *             "product_name": "<name>"} — product_name is null when the
 *             product is unknown (a left join). Orders without a string
 *             "product" field go to the output unchanged in "order" with
 *             product_name null.
 *   lookups   /tables/products/<product id> on any process.
 *
 * Because every process holds the whole table, orders need not be
 * partitioned like products: no repartition topic, no network hop per
 * order. A product written just now is joined once the process has read
 * it back from the changelog (a few milliseconds), in the same order on
 * every process.
 *
 *   mephisto worker --app build/examples/libenrich.so
 */
#include <mephisto.h>
#include <stdlib.h>
#include <string.h>

struct enrich {
    mph_global_table_t *products;
};

/* products → the global table (a changelog write, tracked like a send). */
static mph_err_t load_product(mph_event_t *ev, void *opaque)
{
    struct enrich *e = opaque;
    size_t klen = 0, vlen = 0;
    const void *id = mph_event_key(ev, &klen);
    const void *name = mph_event_value(ev, &vlen);
    if (!id)
        return MPH_OK; /* a product needs an id */
    if (vlen == 0)
        return mph_global_table_delete(ev, e->products, id, klen);
    return mph_global_table_set(ev, e->products, id, klen, name, vlen);
}

/* The join key: the order's "product" string (borrowed from the event). */
static mph_err_t product_of(mph_event_t *ev, const void **key, size_t *key_len,
                            void *opaque)
{
    (void)opaque;
    mph_json_parser_t *p = mph_event_json(ev, NULL);
    const char *s = NULL;
    size_t n = 0;
    if (!p || mph_json_get_str(p, MPH_JSON_ROOT, "product", &s, &n) != MPH_OK) {
        *key = NULL;
        *key_len = 0;
        return MPH_OK; /* joined with nothing: product_name null */
    }
    *key = s;
    *key_len = n;
    return MPH_OK;
}

/* The order and the product's name (NULL: unknown) → the output. */
static mph_err_t emit_enriched(mph_event_t *ev, const void *name,
                               size_t name_len, void *opaque)
{
    (void)opaque;
    size_t klen = 0, vlen = 0;
    const void *key = mph_event_key(ev, &klen);
    const char *order = mph_event_value(ev, &vlen);
    mph_jsonw_t *w = mph_jsonw_new(vlen + name_len + 64, NULL, 0);
    if (!w)
        return MPH_ERR_NOMEM;
    const char *json = NULL;
    size_t len = 0;
    mph_err_t err = mph_jsonw_object_begin(w);
    if (!err)
        err = mph_jsonw_key(w, "order", 5);
    mph_json_parser_t *p = mph_event_json(ev, NULL);
    bool is_json = p && mph_json_validate(p) == MPH_OK;
    if (!err)
        err = is_json ? mph_jsonw_raw(w, order, vlen)
                      : mph_jsonw_str(w, order ? order : "", vlen);
    if (!err)
        err = mph_jsonw_key(w, "product_name", 12);
    if (!err)
        err = name ? mph_jsonw_str(w, name, name_len) : mph_jsonw_null(w);
    if (!err)
        err = mph_jsonw_object_end(w);
    if (!err)
        err = mph_jsonw_finish(w, &json, &len);
    if (!err)
        err = mph_event_emit(ev, key, klen, json, len);
    mph_jsonw_destroy(w);
    return err;
}

static mph_err_t enrich_order(mph_event_t *ev, void *opaque)
{
    struct enrich *e = opaque;
    return mph_table_join_global(ev, e->products, product_of, emit_enriched, e);
}

static mph_topic_t *topic(mph_app_t *app, const char *setting, const char *dflt,
                          char *err, size_t err_size)
{
    const char *name = mph_app_get(app, setting);
    mph_topic_opts_t *opts = mph_topic_opts_new();
    mph_topic_opts_set(opts, "create", "true", NULL, 0);
    mph_topic_t *t =
        mph_topic_new(app, name ? name : dflt, opts, err, err_size);
    mph_topic_opts_destroy(opts);
    return t;
}

int mephisto_app_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    struct enrich *e = calloc(1, sizeof *e);
    if (!e || mph_app_keep(app, e, free) != MPH_OK) {
        free(e);
        goto fail;
    }
    e->products = mph_global_table_new(app, "products", NULL, err, sizeof err);
    if (!e->products)
        goto fail;
    mph_topic_t *products =
        topic(app, "enrich.products_topic", "enrich-products", err, sizeof err);
    mph_topic_t *orders = products ? topic(app, "enrich.orders_topic",
                                           "enrich-orders", err, sizeof err)
                                   : NULL;
    mph_topic_t *out = orders ? topic(app, "enrich.output_topic",
                                      "enrich-orders-enriched", err, sizeof err)
                              : NULL;
    if (!out)
        goto fail;
    mph_agent_t *a =
        mph_agent_new(app, "enrich", orders, enrich_order, e, err, sizeof err);
    if (!mph_agent_new(app, "products", products, load_product, e, err,
                       sizeof err) ||
        !a || mph_agent_add_sink(a, out) != MPH_OK)
        goto fail;
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "enrich: %s", err);
    return -1;
}
