/*
 * The HTTP server on libmicrohttpd (MHD) 0.9.75. See http.h for what it
 * promises.
 *
 * DESIGN. One MHD daemon in external epoll mode (MHD_USE_EPOLL without an
 * internal thread), run by our own thread ("web"): it waits on MHD's epoll
 * fd and an eventfd (for stopping), calls MHD_run() and then closes the
 * connections that are over their request deadline. Non-blocking sockets
 * on epoll mean idle, slow or half-sent connections cost a file descriptor
 * and a memory pool each but never hold up another request, and there is
 * no FD_SETSIZE ceiling. Thread-per-connection was rejected: a thousand
 * slow clients would be a thousand threads. MHD_USE_TURBO is left off (its
 * skipped shutdown() calls and optimistic reads buy nothing at our request
 * rates). MHD parses everything; this file only decides what to answer and
 * which connections to keep.
 *
 * Why our own loop: MHD's connection timeout restarts on every byte, so a
 * client that sends one header byte every few seconds keeps a connection
 * for ever, and MHD has no hook that runs on its own thread between two
 * rounds of its loop. Running the loop ourselves puts MHD's callbacks and
 * our deadline checks on one thread, so the connection table below needs
 * no lock, and a connection's socket is never used after MHD closed it.
 *
 * Connection table (web thread only; the owner's destroy() touches it after
 * the thread has stopped). MHD_OPTION_NOTIFY_CONNECTION tells us when a
 * connection starts and when it is closed (always before MHD closes its
 * socket). A connection is "waiting" from its start, and again from the
 * end of each request it completes, until the request it sends is fully
 * received (the handler is about to run) or answered early. Waiting
 * connections sit in two lists ordered by the time they began waiting:
 * the server's and their address's. Two rules use them:
 *   - Deadline: a connection waiting for longer than header_timeout_ms is
 *     closed: shutdown(2) of its socket, so that MHD sees EOF on its next
 *     round and cleans up as for any client that went away.
 *   - Caps: when a new connection takes its address over
 *     max_connections_per_address live connections, or the server over
 *     max_connections, the oldest waiting connection of that address (of
 *     the server) is closed the same way; the new one itself only when no
 *     other is waiting. So a client cannot keep newer ones out by holding
 *     slow connections: a request sent promptly on a new connection is
 *     always read, even while the same address floods the server. MHD's own
 *     limits (per address and in total) sit CAP_SLACK above ours and only
 *     bound the connections we closed that MHD has not cleaned up yet.
 * A shut-down connection stays in MHD's count until MHD notices; "live"
 * counts exclude it.
 *
 * Per request, MHD calls us in this order, all on the web thread:
 *   1. the URI log callback with the request target exactly as received
 *      (before MHD splits off the query and decodes the path): we allocate
 *      the request state here and keep the raw path (without the scheme
 *      and authority of an absolute-form target, RFC 9112 3.2.2) and its
 *      decoded copy; the state is MHD's per-request context from then on;
 *   2. the access handler once the headers are parsed ("first call"): we
 *      reject other methods (405), conflicting Content-Length headers (400)
 *      and large or unsized bodies (413) by queueing an answer right away,
 *      which MHD allows only now;
 *   3. the access handler with body pieces, which we drop;
 *   4. the access handler with no data ("final call"): we run the
 *      user's handler and queue its response;
 *   5. the completion callback, also when the request failed, timed out or
 *      the daemon stopped: we free the request state.
 * MHD's own messages go to mph_log through the external logger,
 * rate-limited per thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ck_pr.h>
#include <microhttpd.h>

#include "io/http.h"
#include "mephisto/log.h"

#define DEFAULT_BIND_ADDRESS      "127.0.0.1"
#define DEFAULT_MAX_CONNECTIONS   2048u
#define DEFAULT_PER_ADDRESS       256u
#define DEFAULT_TIMEOUT_S         10u
#define DEFAULT_HEADER_TIMEOUT_MS 10000u
/* Room above our caps for connections we closed and MHD has not cleaned up
 * yet (MHD accepts at most 10 per round and cleans the closed ones on the
 * next). */
#define CAP_SLACK 64u
/* The loop wakes at least this often: MHD re-adds its listening socket to
 * its epoll set only at the start of a round, so after MHD's own limit (or
 * EMFILE) stopped accepting, the next round must come even if nothing
 * else happens. */
#define MAX_WAIT_MS 1000
/* Per-connection memory for MHD: request line, headers and the read buffer.
 * Bounds the URI and header size (beyond it MHD answers 414 or 431). */
#define CONNECTION_MEMORY    (32u * 1024u)
#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"
#define ADDR_BUCKETS         1024u

struct http_addr;

/* One accepted connection (web thread). */
struct http_conn {
    struct http_conn *prev, *next;   /* the server's waiting list */
    struct http_conn *aprev, *anext; /* its address's waiting list */
    struct http_addr *addr;
    int fd;
    int64_t since_ms; /* when it began waiting for a request */
    bool waiting;     /* in both waiting lists */
    bool doomed;      /* shut down by us; MHD has yet to clean it up */
};

/* The connections of one client address (web thread). */
struct http_addr {
    struct http_addr *chain;       /* hash bucket */
    uint32_t ip;                   /* IPv4, network order */
    unsigned conns;                /* all, doomed ones included; freed at 0 */
    unsigned live;                 /* not doomed */
    struct http_conn *head, *tail; /* waiting, oldest first */
};

struct mph__http_server {
    struct MHD_Daemon *daemon;
    mph__http_handler_fn handler;
    void *opaque;
    uint16_t port;
    unsigned max_connections;
    unsigned per_address;
    unsigned header_timeout_ms;

    pthread_t thread;
    bool thread_started;
    int stop_fd;   /* eventfd: the owner asks the loop to end */
    int loop_ep;   /* epoll over MHD's epoll fd and stop_fd */
    int stopping;  /* ck_pr */
    unsigned open; /* ck_pr: connections between start and close notices */

    /* web thread only */
    unsigned live;
    struct http_conn *whead, *wtail; /* waiting, oldest first */
    struct http_addr *buckets[ADDR_BUCKETS];
    mph_log_limit_t drop_log;
};

struct mph__http_request {
    struct MHD_Connection *conn;
    const char *method; /* MHD's, valid for the request */
    const char *path;   /* decoded raw_path, in buf after raw_path */
    size_t path_len;    /* counts NUL bytes decoded from %00 */
    bool started;       /* the first access handler call is done */
    char raw_path[];    /* as received, query cut off; then path */
};

struct http_header {
    char *name;
    char *value;
};

struct mph__http_response {
    unsigned status; /* 0: unset */
    bool nomem;      /* sticky out-of-memory */
    char *content_type;
    char *body;
    size_t len;
    size_t cap;
    struct http_header *headers;
    size_t nheaders;
    size_t cap_headers;
};

/* ---- MHD's log messages ------------------------------------------------ */

static _Thread_local mph_log_limit_t t_log_limit;

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    mph_log_limited(&t_log_limit, 1000, MPH_LOG_WARN, "http: %s", msg);
}

static int64_t now_ms(void)
{
    return mph_clock_mono_ns() / 1000000;
}

/* ---- the connection table (web thread) --------------------------------- */

static struct http_addr *addr_get(mph__http_server_t *srv, uint32_t ip)
{
    size_t b = (ip * 2654435761u) % ADDR_BUCKETS;
    for (struct http_addr *a = srv->buckets[b]; a; a = a->chain)
        if (a->ip == ip)
            return a;
    struct http_addr *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ip = ip;
    a->chain = srv->buckets[b];
    srv->buckets[b] = a;
    return a;
}

static void addr_put(mph__http_server_t *srv, struct http_addr *a)
{
    if (--a->conns)
        return;
    struct http_addr **pp = &srv->buckets[(a->ip * 2654435761u) % ADDR_BUCKETS];
    while (*pp != a)
        pp = &(*pp)->chain;
    *pp = a->chain;
    free(a);
}

static void wait_begin(mph__http_server_t *srv, struct http_conn *c,
                       int64_t now)
{
    if (c->waiting || c->doomed)
        return;
    c->waiting = true;
    c->since_ms = now;
    c->next = NULL;
    c->prev = srv->wtail;
    if (srv->wtail)
        srv->wtail->next = c;
    else
        srv->whead = c;
    srv->wtail = c;
    struct http_addr *a = c->addr;
    c->anext = NULL;
    c->aprev = a->tail;
    if (a->tail)
        a->tail->anext = c;
    else
        a->head = c;
    a->tail = c;
}

static void wait_end(mph__http_server_t *srv, struct http_conn *c)
{
    if (!c || !c->waiting)
        return;
    c->waiting = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->whead = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->wtail = c->prev;
    struct http_addr *a = c->addr;
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        a->head = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    else
        a->tail = c->aprev;
    c->prev = c->next = c->aprev = c->anext = NULL;
}

/* Closes c: shutdown(2) makes MHD see EOF on its next round and clean up
 * as for a client that went away (MHD closes the socket after telling us,
 * so the fd is still c's here). */
static void doom(mph__http_server_t *srv, struct http_conn *c, int64_t now,
                 const char *why)
{
    if (c->doomed)
        return;
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &c->addr->ip, ip, sizeof ip);
    mph_log_limited(&srv->drop_log, 1000, MPH_LOG_WARN,
                    "http: closed a connection from %s that waited %lld ms "
                    "for its request: %s",
                    ip, (long long)(now - (c->waiting ? c->since_ms : now)),
                    why);
    wait_end(srv, c);
    c->doomed = true;
    c->addr->live--;
    srv->live--;
    shutdown(c->fd, SHUT_RDWR);
}

static struct http_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_started(mph__http_server_t *srv, struct MHD_Connection *conn,
                         void **socket_context)
{
    *socket_context = NULL;
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!fi)
        return; /* cannot happen in 0.9.75: the socket is set by now */
    uint32_t ip = 0;
    if (ai && ai->client_addr && ai->client_addr->sa_family == AF_INET)
        ip = ((const struct sockaddr_in *)(const void *)ai->client_addr)
                 ->sin_addr.s_addr;
    struct http_conn *c = calloc(1, sizeof *c);
    struct http_addr *a = c ? addr_get(srv, ip) : NULL;
    if (!a) {
        free(c);
        shutdown(fi->connect_fd, SHUT_RDWR); /* out of memory: refuse */
        return;
    }
    c->fd = fi->connect_fd;
    c->addr = a;
    a->conns++;
    a->live++;
    srv->live++;
    *socket_context = c;
    int64_t now = now_ms();
    wait_begin(srv, c, now);
    /* Over a cap: the oldest waiting connection goes (c itself only when
     * every other one is busy with a request). */
    if (a->live > srv->per_address)
        doom(srv, a->head, now,
             "a newer one took its address over the per-address cap "
             "(web_max_per_address)");
    else if (srv->live > srv->max_connections)
        doom(srv, srv->whead, now,
             "a newer one took the server over its cap "
             "(web_max_connections)");
}

static void conn_closed(mph__http_server_t *srv, void **socket_context)
{
    struct http_conn *c = *socket_context;
    *socket_context = NULL;
    if (!c)
        return;
    wait_end(srv, c);
    if (!c->doomed) {
        c->addr->live--;
        srv->live--;
    }
    addr_put(srv, c->addr);
    free(c);
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    mph__http_server_t *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        ck_pr_inc_uint(&srv->open);
        conn_started(srv, conn, socket_context);
    } else {
        conn_closed(srv, socket_context);
        ck_pr_dec_uint(&srv->open);
    }
}

/* Closes the connections waiting for longer than the deadline; returns the
 * milliseconds until the next one is due, or -1. */
static int reap_overdue(mph__http_server_t *srv)
{
    int64_t now = now_ms();
    struct http_conn *c;
    while ((c = srv->whead) &&
           now - c->since_ms >= (int64_t)srv->header_timeout_ms)
        doom(srv, c, now,
             "no complete request in time (web_header_timeout_ms)");
    if (!c)
        return -1;
    return (int)(c->since_ms + (int64_t)srv->header_timeout_ms - now);
}

/* ---- request ----------------------------------------------------------- */

const char *mph__http_request_method(const mph__http_request_t *req)
{
    return req->method;
}

const char *mph__http_request_path(const mph__http_request_t *req)
{
    return req->path;
}

size_t mph__http_request_path_len(const mph__http_request_t *req)
{
    return req->path_len;
}

const char *mph__http_request_raw_path(const mph__http_request_t *req)
{
    return req->raw_path;
}

struct query_lookup {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    bool found;
};

static enum MHD_Result find_query_arg(void *cls, enum MHD_ValueKind kind,
                                      const char *key, size_t key_size,
                                      const char *value, size_t value_size)
{
    struct query_lookup *q = cls;
    (void)kind;
    if (!key || key_size != q->name_len || memcmp(key, q->name, key_size))
        return MHD_YES;
    q->found = true;
    q->value = value ? value : "";
    q->value_len = value ? value_size : 0;
    return MHD_NO; /* stop at the first match */
}

const char *mph__http_request_query(const mph__http_request_t *req,
                                    const char *name, size_t *len)
{
    /* MHD's own lookup compares names case-insensitively; query names are
     * case-sensitive, so iterate and compare exactly. */
    struct query_lookup q = {name, strlen(name), NULL, 0, false};
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND,
                                find_query_arg, &q);
    if (len)
        *len = q.found ? q.value_len : 0;
    return q.found ? q.value : NULL;
}

const char *mph__http_request_header(const mph__http_request_t *req,
                                     const char *name, size_t *len)
{
    const char *value = NULL;
    size_t value_len = 0;
    if (MHD_lookup_connection_value_n(req->conn, MHD_HEADER_KIND, name,
                                      strlen(name), &value,
                                      &value_len) != MHD_YES ||
        !value) {
        value = NULL;
        value_len = 0;
    }
    if (len)
        *len = value_len;
    return value;
}

size_t mph__http_unescape(char *s)
{
    return MHD_http_unescape(s);
}

/* ---- response ---------------------------------------------------------- */

static void response_fini(mph__http_response_t *r)
{
    free(r->content_type);
    free(r->body);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
}

static mph_err_t response_nomem(mph__http_response_t *r)
{
    r->nomem = true;
    return MPH_ERR_NOMEM;
}

mph_err_t mph__http_response_set_status(mph__http_response_t *resp,
                                        unsigned status)
{
    if (status < 200 || status > 599)
        return MPH_ERR_RANGE;
    resp->status = status;
    return MPH_OK;
}

mph_err_t mph__http_response_set_content_type(mph__http_response_t *resp,
                                              const char *type)
{
    if (!type || !*type || strpbrk(type, "\r\n"))
        return MPH_ERR_INVALID;
    char *copy = strdup(type);
    if (!copy)
        return response_nomem(resp);
    free(resp->content_type);
    resp->content_type = copy;
    return MPH_OK;
}

mph_err_t mph__http_response_append(mph__http_response_t *resp,
                                    const void *data, size_t len)
{
    if (resp->nomem)
        return MPH_ERR_NOMEM;
    if (len == 0)
        return MPH_OK;
    if (len > SIZE_MAX / 2 - resp->len)
        return response_nomem(resp);
    if (resp->len + len > resp->cap) {
        size_t cap = resp->cap ? resp->cap : 1024;
        while (cap < resp->len + len)
            cap *= 2;
        char *body = realloc(resp->body, cap);
        if (!body)
            return response_nomem(resp);
        resp->body = body;
        resp->cap = cap;
    }
    memcpy(resp->body + resp->len, data, len);
    resp->len += len;
    return MPH_OK;
}

mph_err_t mph__http_response_set_body(mph__http_response_t *resp,
                                      const void *data, size_t len)
{
    resp->len = 0;
    return mph__http_response_append(resp, data, len);
}

mph_err_t mph__http_response_appendf(mph__http_response_t *resp,
                                     const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MPH_ERR_INVALID;
    if ((size_t)n < sizeof small)
        return mph__http_response_append(resp, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return response_nomem(resp);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    mph_err_t err = mph__http_response_append(resp, big, (size_t)n);
    free(big);
    return err;
}

void mph__http_response_take_body(mph__http_response_t *resp, char *data,
                                  size_t len)
{
    free(resp->body);
    resp->body = data;
    resp->len = data ? len : 0;
    resp->cap = resp->len;
}

static bool server_owned_header(const char *name)
{
    static const char *const names[] = {MHD_HTTP_HEADER_CONTENT_LENGTH,
                                        MHD_HTTP_HEADER_TRANSFER_ENCODING,
                                        MHD_HTTP_HEADER_DATE};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

mph_err_t mph__http_response_add_header(mph__http_response_t *resp,
                                        const char *name, const char *value)
{
    if (!name || !*name || strpbrk(name, " \t:\r\n") || !value || !*value ||
        strpbrk(value, "\r\n") || server_owned_header(name))
        return MPH_ERR_INVALID;
    if (resp->nheaders == resp->cap_headers) {
        size_t cap = resp->cap_headers ? resp->cap_headers * 2 : 4;
        struct http_header *h = realloc(resp->headers, cap * sizeof *h);
        if (!h)
            return response_nomem(resp);
        resp->headers = h;
        resp->cap_headers = cap;
    }
    char *n = strdup(name);
    char *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return response_nomem(resp);
    }
    resp->headers[resp->nheaders].name = n;
    resp->headers[resp->nheaders].value = v;
    resp->nheaders++;
    return MPH_OK;
}

/* ---- answering --------------------------------------------------------- */

/* Queues a fixed text answer; allow adds the Allow header (for 405). */
static enum MHD_Result answer_static(struct MHD_Connection *conn,
                                     unsigned status, const char *text,
                                     bool allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO; /* MHD closes the connection */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            DEFAULT_CONTENT_TYPE);
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Builds the MHD response from the handler's; the body moves into it.
 * NULL (with the body freed) if MHD refuses anything. */
static struct MHD_Response *build_response(mph__http_response_t *resp)
{
    struct MHD_Response *r;
    if (resp->len) {
        r = MHD_create_response_from_buffer(resp->len, resp->body,
                                            MHD_RESPMEM_MUST_FREE);
        if (!r)
            return NULL; /* response_fini() frees the body */
        resp->body = NULL;
    } else {
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return NULL;
    }
    const char *type = resp->content_type;
    if (!type && resp->len)
        type = DEFAULT_CONTENT_TYPE;
    if (type && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                        type) != MHD_YES)
        goto fail_destroy_response;
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (MHD_add_response_header(r, resp->headers[i].name,
                                    resp->headers[i].value) != MHD_YES) {
            mph_log(MPH_LOG_WARN, "http: libmicrohttpd refused header %s",
                    resp->headers[i].name);
            goto fail_destroy_response;
        }
    }
    return r;

fail_destroy_response:
    MHD_destroy_response(r);
    return NULL;
}

static enum MHD_Result answer_with_handler(mph__http_server_t *srv,
                                           mph__http_request_t *req)
{
    mph__http_response_t resp = {0};
    srv->handler(srv->opaque, req, &resp);

    enum MHD_Result ret;
    struct MHD_Response *r = NULL;
    if (resp.nomem) {
        ret = answer_static(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "out of memory\n", false);
    } else if (resp.status == 0) {
        mph_log(MPH_LOG_WARN, "http: handler set no status for %s %s",
                req->method, req->raw_path);
        ret = answer_static(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "handler gave no response\n", false);
    } else if (!(r = build_response(&resp))) {
        ret = answer_static(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "response could not be built\n", false);
    } else {
        ret = MHD_queue_response(req->conn, resp.status, r);
        MHD_destroy_response(r);
    }
    response_fini(&resp);
    return ret;
}

/* True if the request announces a body we will not read: more than
 * MPH__HTTP_MAX_REQUEST_BODY bytes, or of unknown length. MHD has already
 * rejected a malformed first Content-Length value with 400. */
static bool body_too_large(struct MHD_Connection *conn)
{
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return true;
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno != 0 || end == cl || n > MPH__HTTP_MAX_REQUEST_BODY;
}

struct length_scan {
    const char *first;
    size_t first_len;
    bool conflict;
};

static enum MHD_Result scan_length(void *cls, enum MHD_ValueKind kind,
                                   const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
    struct length_scan *s = cls;
    (void)kind;
    static const size_t name_len = sizeof MHD_HTTP_HEADER_CONTENT_LENGTH - 1;
    if (!key || key_size != name_len ||
        strncasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH, name_len) != 0)
        return MHD_YES;
    if (!value)
        value = "";
    if (!s->first) {
        s->first = value;
        s->first_len = value_size;
    } else if (value_size != s->first_len ||
               memcmp(value, s->first, value_size) != 0) {
        s->conflict = true;
        return MHD_NO;
    }
    return MHD_YES;
}

/* True if the request has Content-Length headers that disagree. MHD reads
 * the body by the first one and would parse the rest as the next request
 * (RFC 9112 6.3: the framing is invalid, answer 400 and close). Repeated
 * identical values are accepted (RFC 9110 8.6 allows either). */
static bool lengths_conflict(struct MHD_Connection *conn)
{
    struct length_scan s = {NULL, 0, false};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_length, &s);
    return s.conflict;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    mph__http_server_t *srv = cls;
    mph__http_request_t *req = *req_cls;
    (void)url; /* the path is decoded from the raw target in on_uri */
    (void)version;
    (void)upload_data;

    if (!req) { /* the URI log callback could not allocate */
        wait_end(srv, conn_of(conn));
        return answer_static(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "out of memory\n", false);
    }
    if (!req->started) {
        req->started = true;
        req->conn = conn;
        req->method = method;
        enum MHD_Result early = MHD_YES;
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
            early = answer_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                  "method not allowed\n", true);
        else if (lengths_conflict(conn))
            early =
                answer_static(conn, MHD_HTTP_BAD_REQUEST,
                              "conflicting Content-Length headers\n", false);
        else if (body_too_large(conn))
            early = answer_static(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                  "request body too large\n", false);
        else /* the body (if any) is still to come */
            return MHD_YES;
        /* answered: the deadline is met */
        wait_end(srv, conn_of(conn));
        return early;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* a small body: read and dropped */
        return MHD_YES;
    }
    wait_end(srv, conn_of(conn)); /* the whole request is in */
    return answer_with_handler(srv, req);
}

/* Where the path of an absolute-form target ("http://host:port/x?y",
 * RFC 9112 3.2.2; servers must accept it) begins: after the scheme and the
 * authority. Other targets are returned as they are. */
static const char *origin_part(const char *uri)
{
    size_t skip;
    if (strncasecmp(uri, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(uri, "https://", 8) == 0)
        skip = 8;
    else
        return uri;
    return uri + skip + strcspn(uri + skip, "/?#");
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    const char *origin = uri ? origin_part(uri) : "";
    size_t n = strcspn(origin, "?");
    bool root = uri && origin != uri && n == 0; /* "http://host" is "/" */
    if (root)
        n = 1;
    mph__http_request_t *req = calloc(1, sizeof *req + 2 * (n + 1));
    if (!req)
        return NULL;
    memcpy(req->raw_path, root ? "/" : origin, n);
    req->raw_path[n] = '\0';
    char *path = req->raw_path + n + 1;
    memcpy(path, req->raw_path, n + 1);
    req->path_len = MHD_http_unescape(path);
    req->path = path;
    return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    mph__http_server_t *srv = cls;
    free(*req_cls);
    *req_cls = NULL;
    /* A connection kept open waits for its next request from now on. */
    struct http_conn *c = conn_of(conn);
    if (c && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        wait_begin(srv, c, now_ms());
}

/* ---- server ------------------------------------------------------------ */

static void *web_loop(void *arg)
{
    mph__http_server_t *srv = arg;
    mph_log_set_thread_name("web");
    while (!ck_pr_load_int(&srv->stopping)) {
        MHD_run(srv->daemon);
        int wait = reap_overdue(srv);
        MHD_UNSIGNED_LONG_LONG mhd_ms;
        if (MHD_get_timeout(srv->daemon, &mhd_ms) == MHD_YES &&
            (wait < 0 || mhd_ms < (MHD_UNSIGNED_LONG_LONG)wait))
            wait = (int)(mhd_ms < MAX_WAIT_MS ? mhd_ms : MAX_WAIT_MS);
        if (wait < 0 || wait > MAX_WAIT_MS)
            wait = MAX_WAIT_MS;
        struct epoll_event ev[2];
        if (epoll_wait(srv->loop_ep, ev, 2, wait) < 0 && errno != EINTR) {
            mph_log(MPH_LOG_ERROR, "http: epoll_wait: %s; the web view stops",
                    strerror(errno));
            break;
        }
    }
    return NULL;
}

static bool add_to_loop(int ep, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
}

mph__http_server_t *mph__http_server_new(const mph__http_config_t *cfg,
                                         char *errstr, size_t errstr_size)
{
    if (!cfg || !cfg->handler) {
        snprintf(errstr, errstr_size, "http: no handler given");
        return NULL;
    }
    const char *addr =
        cfg->bind_address ? cfg->bind_address : DEFAULT_BIND_ADDRESS;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(cfg->port);
    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        snprintf(errstr, errstr_size,
                 "http: bind address \"%s\" is not an IPv4 address", addr);
        return NULL;
    }

    mph__http_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(errstr, errstr_size, "http: out of memory");
        return NULL;
    }
    srv->handler = cfg->handler;
    srv->opaque = cfg->opaque;
    srv->stop_fd = -1;
    srv->loop_ep = -1;
    srv->max_connections =
        cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNECTIONS;
    srv->per_address = cfg->max_connections_per_address
                           ? cfg->max_connections_per_address
                           : DEFAULT_PER_ADDRESS;
    if (srv->per_address > srv->max_connections)
        srv->per_address = srv->max_connections;
    srv->header_timeout_ms = cfg->header_timeout_ms ? cfg->header_timeout_ms
                                                    : DEFAULT_HEADER_TIMEOUT_MS;
    unsigned timeout = cfg->timeout_s ? cfg->timeout_s : DEFAULT_TIMEOUT_S;
    errno = 0;
    srv->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, cfg->port, NULL, NULL, on_access,
        srv,
        /* the logger first, so that start-up messages reach it too */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sin, MHD_OPTION_CONNECTION_LIMIT,
        srv->max_connections + CAP_SLACK, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        srv->per_address + CAP_SLACK, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_END);
    if (!srv->daemon) {
        int err = errno;
        snprintf(errstr, errstr_size,
                 "http: cannot serve on %s:%u (%s; libmicrohttpd's reason "
                 "is in the log)",
                 addr, (unsigned)cfg->port,
                 err ? strerror(err) : "unknown error");
        goto fail_free_server;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        snprintf(errstr, errstr_size, "http: bound port unknown");
        goto fail_stop_daemon;
    }
    srv->port = info->port;
    const union MHD_DaemonInfo *ep =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    srv->loop_ep = epoll_create1(EPOLL_CLOEXEC);
    if (!ep || srv->stop_fd < 0 || srv->loop_ep < 0 ||
        !add_to_loop(srv->loop_ep, ep->epoll_fd) ||
        !add_to_loop(srv->loop_ep, srv->stop_fd)) {
        snprintf(errstr, errstr_size, "http: cannot set up the event loop: %s",
                 strerror(errno));
        goto fail_stop_daemon;
    }
    int err = pthread_create(&srv->thread, NULL, web_loop, srv);
    if (err) {
        snprintf(errstr, errstr_size, "http: cannot start the web thread: %s",
                 strerror(err));
        goto fail_stop_daemon;
    }
    srv->thread_started = true;
    mph_log(MPH_LOG_INFO,
            "http: serving on %s:%u (max %u connections, %u per address, "
            "%u s idle timeout, %u ms to send a request)",
            addr, (unsigned)srv->port, srv->max_connections, srv->per_address,
            timeout, srv->header_timeout_ms);
    return srv;

fail_stop_daemon:
    MHD_stop_daemon(srv->daemon);
    if (srv->loop_ep >= 0)
        close(srv->loop_ep);
    if (srv->stop_fd >= 0)
        close(srv->stop_fd);
fail_free_server:
    free(srv);
    return NULL;
}

uint16_t mph__http_server_port(const mph__http_server_t *srv)
{
    return srv->port;
}

unsigned mph__http_server_connections(const mph__http_server_t *srv)
{
    return ck_pr_load_uint(&((mph__http_server_t *)srv)->open);
}

void mph__http_server_destroy(mph__http_server_t *srv)
{
    if (!srv)
        return;
    if (srv->thread_started) {
        ck_pr_store_int(&srv->stopping, 1);
        uint64_t one = 1;
        ssize_t n = write(srv->stop_fd, &one, sizeof one);
        (void)n; /* a full counter also wakes the loop */
        pthread_join(srv->thread, NULL);
    }
    /* The loop has ended: MHD's clean-up runs its callbacks on this
     * thread, which is now the only one touching the table. */
    MHD_stop_daemon(srv->daemon);
    close(srv->loop_ep);
    close(srv->stop_fd);
    for (size_t b = 0; b < ADDR_BUCKETS; b++)
        while (srv->buckets[b]) { /* MHD told us of every close: none */
            struct http_addr *a = srv->buckets[b];
            srv->buckets[b] = a->chain;
            free(a);
        }
    free(srv);
}
