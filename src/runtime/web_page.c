/*
 * The web view's page (GET / and /index.html; see web.c for the routes).
 *
 * DESIGN. One HTML document, no external resource. The body is rendered
 * here from a stats snapshot (mph__stats_take: lock-free reads of the
 * workers' monitors), so every number reads without JavaScript. The inline
 * script then reads /stats every second, updates every number, keeps the
 * samples of the last five minutes and draws them as inline SVG charts:
 * events/s and lag per worker and per partition, and latencies (send
 * p50/p99, processing p99, the last offset commit, the transaction commit
 * p99 under exactly_once). Each line is a <path>
 * with data-series, data-last (its newest value) and data-points, and each
 * chart's <svg> carries data-max, so a test (or a reader of the DOM) sees
 * the numbers drawn. Sections for keys other modules add to /stats
 * (standbys, timers) show only while /stats has them; restore progress
 * (the "recovery" object) shows progress and an ETA from the restore rate
 * between samples, plus any other key of that object.
 *
 * Counters shown side by side are named for what they count: "sends" are
 * records agents sent (dead letters included), while the broker also
 * acknowledges the tables' changelog records, which no agent sends; so
 * acknowledged = sends + changelog records once everything has landed.
 * @locality web
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "io/http.h"
#include "mephisto/app.h"
#include "runtime/monitor.h"
#include "runtime/web.h"

static const char page_head[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<title>mephisto</title>\n"
    "<meta name=\"viewport\" content=\"width=device-width\">\n"
    "<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1300px}\n"
    "h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .3em}\n"
    "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}\n"
    "th{background:#f4f4f4}td.l,th.l{text-align:left}\n"
    "#state.ready{color:#080}#state.starting{color:#a60}#state.stopped{color:#b00}#error{color:#b00}\n"
    "nav a{margin-right:1em}.note{color:#555}\n"
    ".js-only{display:none}body.js .js-only{display:block}#charts{display:flex;flex-wrap:wrap;gap:1em}\n"
    "figure{margin:0;width:600px}figcaption{font-weight:600}\n"
    "svg.chart{width:600px;height:170px;font:11px system-ui,sans-serif;fill:#444}\n"
    "svg .plot{fill:#fafafa;stroke:#ccc}svg .grid{stroke:#e4e4e4}\n"
    "svg .series{fill:none;stroke-width:1.5}\n"
    ".legend{display:flex;flex-wrap:wrap;gap:0 .8em;font-size:12px}.legend span{white-space:nowrap}\n"
    "progress{width:300px}\n"
    "</style></head>\n";

static const char page_charts[] =
    "<section class=\"js-only\"><h2>Charts (the last five minutes)</h2>\n"
    "<div id=\"charts\">\n"
    "<figure><figcaption>events/s per worker</figcaption><svg class=\"chart\" id=\"chart_worker_eps\" role=\"img\"></svg><div class=\"legend\" id=\"chart_worker_eps_legend\"></div></figure>\n"
    "<figure><figcaption>events/s per partition</figcaption><svg class=\"chart\" id=\"chart_part_eps\" role=\"img\"></svg><div class=\"legend\" id=\"chart_part_eps_legend\"></div></figure>\n"
    "<figure><figcaption>lag per worker (records)</figcaption><svg class=\"chart\" id=\"chart_worker_lag\" role=\"img\"></svg><div class=\"legend\" id=\"chart_worker_lag_legend\"></div></figure>\n"
    "<figure><figcaption>lag per partition (records)</figcaption><svg class=\"chart\" id=\"chart_part_lag\" role=\"img\"></svg><div class=\"legend\" id=\"chart_part_lag_legend\"></div></figure>\n"
    "<figure><figcaption>latency (&micro;s): send p50 / p99, processing p99, last offset commit, transaction commit p99 (exactly_once)</figcaption><svg class=\"chart\" id=\"chart_latency\" role=\"img\"></svg><div class=\"legend\" id=\"chart_latency_legend\"></div></figure>\n"
    "</div></section>\n"
    "<noscript><p class=\"note\">The charts need JavaScript. The numbers on this page are as of its loading: reload it for new ones.</p></noscript>\n";

static const char page_optional[] =
    "<section id=\"sec_standbys\" hidden><h2>Restores and standby replicas</h2>\n"
    "<table><tbody id=\"standbys\"></tbody></table></section>\n"
    "<section id=\"sec_services\" hidden><h2>Timers, crontab entries, tasks and leader</h2>\n"
    "<table><tbody id=\"services\"></tbody></table></section>\n";

static const char page_script[] =
    "<script>\n"
    "'use strict';\n"
    "const $ = (id) => document.getElementById(id);\n"
    "const KEEP_MS = 300000, COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd',\n"
    "  '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];\n"
    "const MAX_SERIES = 16;\n"
    "let prev = null, updates = 0, restorePrev = null;\n"
    "const hist = [];\n"
    "const us = (ns) => (ns / 1000).toFixed(1);\n"
    "const show = (v) => (v === null || v === undefined) ? '-' : String(v);\n"
    "const num = (v) => Math.abs(v) >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);\n"
    "function row(cells, left) {\n"
    "  const tr = document.createElement('tr');\n"
    "  cells.forEach((c, i) => {\n"
    "    const td = document.createElement('td');\n"
    "    if (i < left) td.className = 'l';\n"
    "    td.textContent = show(c);\n"
    "    tr.appendChild(td);\n"
    "  });\n"
    "  return tr;\n"
    "}\n"
    "function fill(id, rows) {\n"
    "  const body = $(id);\n"
    "  while (body.firstChild) body.removeChild(body.firstChild);\n"
    "  rows.forEach((r) => body.appendChild(r));\n"
    "}\n"
    "function rate(key, now, count) {\n"
    "  if (!prev || !(key in prev.counts) || now <= prev.time) return null;\n"
    "  return Math.round((count - prev.counts[key]) * 1000 / (now - prev.time));\n"
    "}\n"
    "const SVGNS = 'http://www.w3.org/2000/svg';\n"
    "function svgEl(name, attrs) {\n"
    "  const e = document.createElementNS(SVGNS, name);\n"
    "  Object.keys(attrs).forEach((k) => e.setAttribute(k, attrs[k]));\n"
    "  return e;\n"
    "}\n"
    "/* Draws hist[i][field] (an object: series name -> value) as lines in the\n"
    " * svg with that id: x is time over the last minutes, y from 0 to the\n"
    " * largest value. Each line is a path with data-series, data-last (its\n"
    " * newest value) and data-points; the svg carries data-max. */\n"
    "function chart(id, field, unit) {\n"
    "  const svg = $(id);\n"
    "  const W = 600, H = 170, L = 58, R = 592, T = 10, B = 146;\n"
    "  while (svg.firstChild) svg.removeChild(svg.firstChild);\n"
    "  const names = [];\n"
    "  hist.forEach((h) => Object.keys(h[field]).forEach((k) => {\n"
    "    if (!names.includes(k)) names.push(k);\n"
    "  }));\n"
    "  names.sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));\n"
    "  const shown = names.slice(0, MAX_SERIES);\n"
    "  const now = hist.length ? hist[hist.length - 1].t : 0;\n"
    "  const span = Math.max(10000, Math.min(KEEP_MS, hist.length ? now - hist[0].t : 0));\n"
    "  let max = 0;\n"
    "  hist.forEach((h) => shown.forEach((k) => {\n"
    "    const v = h[field][k];\n"
    "    if (typeof v === 'number' && v > max) max = v;\n"
    "  }));\n"
    "  const top = max > 0 ? max * 1.1 : 1;\n"
    "  const x = (t) => R - (now - t) * (R - L) / span;\n"
    "  const y = (v) => B - v * (B - T) / top;\n"
    "  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);\n"
    "  svg.setAttribute('data-max', String(max));\n"
    "  svg.appendChild(svgEl('rect', {x: L, y: T, width: R - L, height: B - T, class: 'plot'}));\n"
    "  [0, 0.5, 1].forEach((f) => {\n"
    "    const v = top * f;\n"
    "    svg.appendChild(svgEl('line', {x1: L, x2: R, y1: y(v), y2: y(v), class: 'grid'}));\n"
    "    const tx = svgEl('text', {x: L - 4, y: y(v) + 4, 'text-anchor': 'end'});\n"
    "    tx.textContent = num(v);\n"
    "    svg.appendChild(tx);\n"
    "  });\n"
    "  const t0 = svgEl('text', {x: L, y: H - 6});\n"
    "  t0.textContent = '-' + Math.round(span / 1000) + ' s';\n"
    "  svg.appendChild(t0);\n"
    "  const t1 = svgEl('text', {x: R, y: H - 6, 'text-anchor': 'end'});\n"
    "  t1.textContent = 'now (' + unit + ')';\n"
    "  svg.appendChild(t1);\n"
    "  const legend = $(id + '_legend');\n"
    "  while (legend.firstChild) legend.removeChild(legend.firstChild);\n"
    "  shown.forEach((k, i) => {\n"
    "    const pts = [];\n"
    "    let last = null;\n"
    "    hist.forEach((h) => {\n"
    "      const v = h[field][k];\n"
    "      if (typeof v !== 'number' || now - h.t > span) return;\n"
    "      pts.push(x(h.t).toFixed(1) + ' ' + y(v).toFixed(1));\n"
    "      last = v;\n"
    "    });\n"
    "    if (!pts.length) return;\n"
    "    if (pts.length === 1) pts.push((R).toFixed(1) + ' ' + pts[0].split(' ')[1]);\n"
    "    const color = COLORS[i % COLORS.length];\n"
    "    svg.appendChild(svgEl('path', {d: 'M' + pts.join(' L'), stroke: color, class: 'series',\n"
    "      'data-series': k, 'data-last': String(last), 'data-points': String(pts.length)}));\n"
    "    const item = document.createElement('span');\n"
    "    item.style.color = color;\n"
    "    item.textContent = '\\u25A0 ' + k + ' ' + num(last);\n"
    "    legend.appendChild(item);\n"
    "  });\n"
    "  if (names.length > shown.length) {\n"
    "    const more = document.createElement('span');\n"
    "    more.textContent = '(' + shown.length + ' of ' + names.length + ' shown)';\n"
    "    legend.appendChild(more);\n"
    "  }\n"
    "}\n"
    "/* Rows of an object of unknown shape: nested keys joined with '.';\n"
    " * an array of objects becomes rows \"key[i].field\". */\n"
    "function flat(obj, prefix, out) {\n"
    "  Object.keys(obj).forEach((k) => {\n"
    "    const v = obj[k], name = prefix ? prefix + '.' + k : k;\n"
    "    if (v !== null && typeof v === 'object') {\n"
    "      if (Array.isArray(v)) {\n"
    "        v.forEach((e, i) => {\n"
    "          if (e !== null && typeof e === 'object') flat(e, name + '[' + i + ']', out);\n"
    "          else out.push([name + '[' + i + ']', e]);\n"
    "        });\n"
    "      } else {\n"
    "        flat(v, name, out);\n"
    "      }\n"
    "    } else {\n"
    "      out.push([name, v]);\n"
    "    }\n"
    "  });\n"
    "  return out;\n"
    "}\n"
    "/* A section shown only while /stats has the key. */\n"
    "function optional(key, v) {\n"
    "  const sec = $('sec_' + key);\n"
    "  if (v === undefined || v === null) {\n"
    "    sec.hidden = true;\n"
    "    return;\n"
    "  }\n"
    "  sec.hidden = false;\n"
    "  const rows = (typeof v === 'object') ? flat(v, '', []) : [[key, v]];\n"
    "  fill(key, rows.map((r) => row(r, 1)));\n"
    "}\n"
    "function restore(s, now) {\n"
    "  const r = s.recovery;\n"
    "  if (!r) return;\n"
    "  const total = r.records_total, done = r.records_restored;\n"
    "  const frac = total > 0 ? Math.min(1, done / total) : 1;\n"
    "  let eta = '-';\n"
    "  if (done >= total) {\n"
    "    eta = 'done';\n"
    "  } else if (restorePrev && now > restorePrev.t && done > restorePrev.done) {\n"
    "    const per_ms = (done - restorePrev.done) / (now - restorePrev.t);\n"
    "    eta = Math.ceil((total - done) / per_ms / 1000) + ' s';\n"
    "  }\n"
    "  if (!restorePrev || done !== restorePrev.done || done >= total) restorePrev = {t: now, done: done};\n"
    "  $('restore_bar').value = frac;\n"
    "  $('restore_text').textContent = done + ' of ' + total + ' changelog records (' +\n"
    "    Math.floor(frac * 100) + ' %), ' + r.recoveries + ' recoveries';\n"
    "  $('restore_eta').textContent = eta;\n"
    "  const extra = flat(r, '', []).filter((e) =>\n"
    "    !['recoveries', 'records_restored', 'records_total'].includes(e[0]) &&\n"
    "    !/^(restoring|standbys)\\[/.test(e[0]));\n"
    "  fill('restore_extra', extra.map((e) => row(e, 1)));\n"
    "}\n"
    "async function tick() {\n"
    "  try {\n"
    "    const r = await fetch('/stats', {cache: 'no-store'});\n"
    "    if (!r.ok) throw new Error('HTTP ' + r.status);\n"
    "    const s = await r.json();\n"
    "    const t = s.totals, now = s.time_ms, counts = {};\n"
    "    $('app').textContent = s.app_id;\n"
    "    const state = s.ready ? 'ready' : (s.running ? 'starting' : 'stopped');\n"
    "    $('state').textContent = state;\n"
    "    $('state').className = state;\n"
    "    $('events_in').textContent = t.events_in;\n"
    "    $('events_per_s').textContent = Math.round(t.events_per_s);\n"
    "    $('events_failed').textContent = t.events_failed;\n"
    "    const pl = t.processing_latency_ns, sl = t.send_latency_ns;\n"
    "    $('latency').textContent = us(pl.p50) + ' / ' + us(pl.p99) + ' / ' + us(pl.p999);\n"
    "    $('sends').textContent = t.sends;\n"
    "    $('sends_acked').textContent = t.sends_acked;\n"
    "    $('send_errors').textContent = t.send_errors + ' / ' + t.send_retries;\n"
    "    $('send_latency').textContent = us(sl.p50) + ' / ' + us(sl.p99);\n"
    "    const c = s.commits;\n"
    "    $('commits').textContent = c ? (c.commits + ' / ' + c.commit_errors + ' / ' + c.rebalances) : '-';\n"
    "    $('commit_latency').textContent = c ? (c.last_commit_latency_us / 1000).toFixed(1) : '-';\n"
    "    $('uptime').textContent = Math.round(s.uptime_s);\n"
    "    fill('workers', s.workers.map((w) => row([w.worker, w.partitions, w.events_in,\n"
    "      Math.round(w.events_per_s), us(w.processing_latency_ns.p99)], 0)));\n"
    "    let lag = 0;\n"
    "    const parts = [], h = {t: now, ws: {}, wl: {}, ps: {}, pl: {}, lat: {}};\n"
    "    s.workers.forEach((w) => { h.ws['w' + w.worker] = w.events_per_s; h.wl['w' + w.worker] = 0; });\n"
    "    s.topics.forEach((tp) => tp.partitions.forEach((p) => {\n"
    "      const key = tp.name + '/' + p.partition;\n"
    "      counts[key] = p.events;\n"
    "      const eps = rate(key, now, p.events);\n"
    "      if (eps !== null) h.ps[key] = eps;\n"
    "      if (p.lag !== null) {\n"
    "        lag += p.lag;\n"
    "        h.pl[key] = p.lag;\n"
    "        if (p.worker !== null && p.worker >= 0) h.wl['w' + p.worker] = (h.wl['w' + p.worker] || 0) + p.lag;\n"
    "      }\n"
    "      parts.push(row([tp.name, p.partition, p.worker, p.events, eps, p.read_offset,\n"
    "        p.end_offset, p.lag, p.commit_point], 1));\n"
    "    }));\n"
    "    h.lat['send p50'] = sl.p50 / 1000;\n"
    "    h.lat['send p99'] = sl.p99 / 1000;\n"
    "    h.lat['processing p99'] = pl.p99 / 1000;\n"
    "    if (c) h.lat['last commit'] = c.last_commit_latency_us;\n"
    "    const tc = t.transaction_commit_latency_ns;\n"
    "    if (tc && tc.count > 0) h.lat['transaction commit p99'] = tc.p99 / 1000;\n"
    "    fill('partitions', parts);\n"
    "    $('lag').textContent = lag;\n"
    "    hist.push(h);\n"
    "    while (hist.length && now - hist[0].t > KEEP_MS) hist.shift();\n"
    "    chart('chart_worker_eps', 'ws', 'events/s');\n"
    "    chart('chart_part_eps', 'ps', 'events/s');\n"
    "    chart('chart_worker_lag', 'wl', 'records');\n"
    "    chart('chart_part_lag', 'pl', 'records');\n"
    "    chart('chart_latency', 'lat', '\\u00b5s');\n"
    "    restore(s, now);\n"
    "    const rec = s.recovery || {}, reps = {};\n"
    "    if (rec.restoring && rec.restoring.length) reps.restoring = rec.restoring;\n"
    "    if (rec.standbys && rec.standbys.length) reps.standbys = rec.standbys;\n"
    "    optional('standbys', Object.keys(reps).length ? reps : null);\n"
    "    optional('services', s.services);\n"
    "    $('error').textContent = '';\n"
    "    prev = {time: now, counts: counts};\n"
    "    updates += 1;\n"
    "    document.body.setAttribute('data-updates', String(updates));\n"
    "  } catch (e) {\n"
    "    $('error').textContent = 'cannot read /stats: ' + e.message;\n"
    "  }\n"
    "}\n"
    "document.body.classList.add('js');\n"
    "tick();\n"
    "setInterval(tick, 1000);\n"
    "</script>\n"
    "</body></html>\n";

/* Appends s with &, <, > and " escaped. */
static void html_text(mph__http_response_t *resp, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '&'   ? "&amp;"
                          : *s == '<' ? "&lt;"
                          : *s == '>' ? "&gt;"
                          : *s == '"' ? "&quot;"
                                      : NULL;
        if (!rep)
            continue;
        mph__http_response_append(resp, run, (size_t)(s - run));
        mph__http_response_append(resp, rep, strlen(rep));
        run = s + 1;
    }
    mph__http_response_append(resp, run, (size_t)(s - run));
}

/* A table cell with a number, "-" when v < 0 (unknown). */
static void cell_i64(mph__http_response_t *resp, int64_t v)
{
    if (v < 0)
        mph__http_response_appendf(resp, "<td>-</td>");
    else
        mph__http_response_appendf(resp, "<td>%lld</td>", (long long)v);
}

/* "%.1f" of ns in µs, or "-" without a snapshot. */
static const char *usec(char *buf, size_t size, bool have, uint64_t ns)
{
    if (!have)
        return "-";
    snprintf(buf, size, "%.1f", (double)ns / 1000);
    return buf;
}

static const char *u64s(char *buf, size_t size, bool have, uint64_t v)
{
    if (!have)
        return "-";
    snprintf(buf, size, "%llu", (unsigned long long)v);
    return buf;
}

static void totals(mph__http_response_t *resp, const mph__stats_t *st, bool have)
{
    const mph__stats_worker_t *t = &st->totals;
    char b[12][32];
    int64_t lag = 0;
    for (size_t i = 0; have && i < st->ntopics; i++)
        for (size_t p = 0; p < st->topics[i].nparts; p++)
            if (st->topics[i].parts[p].lag > 0)
                lag += st->topics[i].parts[p].lag;
    snprintf(b[0], sizeof b[0], "%.0f", t->events_per_s);
    mph__http_response_appendf(
        resp,
        "<h2>Totals</h2>\n<table>\n"
        "<tr><th class=\"l\">events in</th><td id=\"events_in\">%s</td></tr>\n"
        "<tr><th class=\"l\">events/s</th><td id=\"events_per_s\">%s</td></tr>\n"
        "<tr><th class=\"l\">failed</th><td id=\"events_failed\">%s</td></tr>\n"
        "<tr><th class=\"l\">lag (records)</th><td id=\"lag\">%s</td></tr>\n",
        u64s(b[1], sizeof b[1], have, t->events_in), have ? b[0] : "-",
        u64s(b[2], sizeof b[2], have, t->events_failed),
        u64s(b[3], sizeof b[3], have, (uint64_t)lag));
    mph__http_response_appendf(
        resp,
        "<tr><th class=\"l\">processing p50 / p99 / p99.9 (&micro;s)</th>"
        "<td id=\"latency\">%s / %s / %s</td></tr>\n",
        usec(b[0], sizeof b[0], have, t->processing.p50_ns),
        usec(b[1], sizeof b[1], have, t->processing.p99_ns),
        usec(b[2], sizeof b[2], have, t->processing.p999_ns));
    mph__http_response_appendf(
        resp,
        "<tr><th class=\"l\">records sent by agents (dead letters included)</th>"
        "<td id=\"sends\">%s</td></tr>\n"
        "<tr><th class=\"l\">records the broker acknowledged (agents' records and the "
        "tables' changelog records)</th><td id=\"sends_acked\">%s</td></tr>\n"
        "<tr><th class=\"l\">send errors / retries</th><td id=\"send_errors\">%s / %s</td>"
        "</tr>\n"
        "<tr><th class=\"l\">send latency p50 / p99 (&micro;s; agents' and changelog "
        "records)</th><td id=\"send_latency\">%s / %s</td></tr>\n",
        u64s(b[0], sizeof b[0], have, t->sends), u64s(b[1], sizeof b[1], have, t->sends_acked),
        u64s(b[2], sizeof b[2], have, t->send_errors),
        u64s(b[3], sizeof b[3], have, t->send_retries),
        usec(b[4], sizeof b[4], have, t->send_latency.p50_ns),
        usec(b[5], sizeof b[5], have, t->send_latency.p99_ns));
    bool coord = have && st->have_coord;
    snprintf(b[6], sizeof b[6], "%.1f", (double)st->coord.last_commit_us / 1000);
    snprintf(b[7], sizeof b[7], "%.0f", st->uptime_s);
    mph__http_response_appendf(
        resp,
        "<tr><th class=\"l\">offset commits / errors / rebalances</th>"
        "<td id=\"commits\">%s / %s / %s</td></tr>\n"
        "<tr><th class=\"l\">last offset commit (ms)</th><td id=\"commit_latency\">%s</td>"
        "</tr>\n"
        "<tr><th class=\"l\">uptime (s)</th><td id=\"uptime\">%s</td></tr>\n</table>\n",
        u64s(b[0], sizeof b[0], coord, st->coord.commits),
        u64s(b[1], sizeof b[1], coord, st->coord.commit_errors),
        u64s(b[2], sizeof b[2], coord, st->coord.rebalances), coord ? b[6] : "-",
        have ? b[7] : "-");
}

static void restore(mph__http_response_t *resp, const mph__stats_t *st)
{
    uint64_t total = st->recovery.records_total, done = st->recovery.records_restored;
    double frac = total ? (double)(done < total ? done : total) / (double)total : 1.0;
    mph__http_response_appendf(
        resp,
        "<h2>Table restore</h2>\n<p><progress id=\"restore_bar\" max=\"1\" "
        "value=\"%.4f\"></progress> <span id=\"restore_text\">%llu of %llu changelog "
        "records (%d %%), %llu recoveries</span>; ETA <span id=\"restore_eta\">%s</span>"
        "</p>\n<table><tbody id=\"restore_extra\"></tbody></table>\n",
        frac, (unsigned long long)done, (unsigned long long)total, (int)(frac * 100),
        (unsigned long long)st->recovery.recoveries, done >= total ? "done" : "-");
}

static void workers_and_partitions(mph__http_response_t *resp, const mph__stats_t *st,
                                   bool have)
{
    mph__http_response_appendf(
        resp, "<h2>Workers</h2>\n<table><thead><tr><th>worker</th><th>partitions</th>"
              "<th>events</th><th>events/s</th><th>p99 (&micro;s)</th></tr></thead>"
              "<tbody id=\"workers\">");
    for (size_t i = 0; have && i < st->nworkers; i++) {
        const mph__stats_worker_t *w = &st->workers[i];
        mph__http_response_appendf(resp,
                                   "<tr><td>%d</td><td>%llu</td><td>%llu</td><td>%.0f</td>"
                                   "<td>%.1f</td></tr>",
                                   w->worker, (unsigned long long)w->partitions,
                                   (unsigned long long)w->events_in, w->events_per_s,
                                   (double)w->processing.p99_ns / 1000);
    }
    mph__http_response_appendf(
        resp, "</tbody></table>\n<h2>Partitions</h2>\n<table><thead><tr><th class=\"l\">"
              "topic</th><th>partition</th><th>worker</th><th>events</th><th>events/s</th>"
              "<th>read offset</th><th>end offset</th><th>lag</th><th>commit point</th></tr>"
              "</thead><tbody id=\"partitions\">");
    for (size_t i = 0; have && i < st->ntopics; i++)
        for (size_t p = 0; p < st->topics[i].nparts; p++) {
            const mph__stats_part_t *sp = &st->topics[i].parts[p];
            mph__http_response_appendf(resp, "<tr><td class=\"l\">");
            html_text(resp, st->topics[i].name);
            mph__http_response_appendf(resp, "</td><td>%d</td>", (int)sp->partition);
            cell_i64(resp, sp->worker);
            mph__http_response_appendf(resp, "<td>%llu</td><td>-</td>",
                                       (unsigned long long)sp->events);
            cell_i64(resp, sp->read_offset);
            cell_i64(resp, sp->end_offset);
            cell_i64(resp, sp->lag);
            cell_i64(resp, sp->commit_point);
            mph__http_response_appendf(resp, "</tr>");
        }
    mph__http_response_appendf(resp, "</tbody></table>\n");
}

void mph__web_page(mph_app_t *app, mph__http_response_t *resp)
{
    mph__stats_t st;
    memset(&st, 0, sizeof st);
    bool have = mph__stats_take(&st, app) == MPH_OK;
    const char *state = !have ? "stopped" : st.ready ? "ready" : st.running ? "starting"
                                                                           : "stopped";
    mph__http_response_set_status(resp, 200);
    mph__http_response_set_content_type(resp, "text/html; charset=utf-8");
    mph__http_response_add_header(resp, "Cache-Control", "no-store");
    mph__http_response_append(resp, page_head, sizeof page_head - 1);
    mph__http_response_appendf(resp, "<body data-updates=\"0\">\n<h1>mephisto: <span id=\"app\">");
    html_text(resp, mph_app_id(app) ? mph_app_id(app) : "");
    mph__http_response_appendf(
        resp,
        "</span> <small id=\"state\" class=\"%s\">%s</small></h1>\n"
        "<nav><a href=\"/stats\">/stats</a><a href=\"/metrics\">/metrics</a>"
        "<a href=\"/router\">/router</a><a href=\"/health\">/health</a>"
        "<a href=\"/ready\">/ready</a></nav>\n<p id=\"error\"></p>\n",
        state, state);
    totals(resp, &st, have);
    mph__http_response_append(resp, page_charts, sizeof page_charts - 1);
    restore(resp, &st);
    mph__http_response_append(resp, page_optional, sizeof page_optional - 1);
    workers_and_partitions(resp, &st, have);
    mph__http_response_append(resp, page_script, sizeof page_script - 1);
    if (have)
        mph__stats_fini(&st);
}
