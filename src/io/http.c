/*
 * The HTTP server on libmicrohttpd (MHD) 0.9.75. See http.h for what it
 * promises.
 *
 * DESIGN. One MHD daemon in MHD_USE_EPOLL_INTERNAL_THREAD mode: a single
 * internal thread ("web") runs an epoll loop over non-blocking sockets, so
 * idle, slow or half-sent connections cost a file descriptor and a memory
 * pool each but never hold up another request, and there is no FD_SETSIZE
 * ceiling. Thread-per-connection was rejected: a thousand slow clients
 * would be a thousand threads. MHD_USE_ITC gives the loop an eventfd so
 * MHD_stop_daemon() wakes it at once. MHD_USE_TURBO is left off (its
 * skipped shutdown() calls and optimistic reads buy nothing at our request
 * rates). MHD parses everything; this file only decides what to answer.
 *
 * Per request, MHD calls us in this order, all on the web thread:
 *   1. the URI log callback with the request target exactly as received
 *      (before MHD splits off the query and decodes the path): we allocate
 *      the request state here and keep the raw path, which MHD offers
 *      nowhere else; the state is MHD's per-request context from then on;
 *   2. the access handler once the headers are parsed ("first call"): we
 *      reject other methods (405) and large or unsized bodies (413) by
 *      queueing an answer right away, which MHD allows only now;
 *   3. the access handler with body pieces, which we drop;
 *   4. the access handler with no data ("final call"): we run the
 *      user's handler and queue its response;
 *   5. the completion callback, also when the request failed, timed out or
 *      the daemon stopped: we free the request state.
 * MHD has no thread-start hook; the thread names itself "web" for logging
 * on its first callback. MHD's own messages go to mph_log through the
 * external logger, rate-limited per thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <ck_pr.h>
#include <microhttpd.h>

#include "io/http.h"
#include "mephisto/log.h"

#define DEFAULT_BIND_ADDRESS    "127.0.0.1"
#define DEFAULT_MAX_CONNECTIONS 2048u
#define DEFAULT_TIMEOUT_S       10u
/* Per-connection memory for MHD: request line, headers and the read buffer.
 * Bounds the URI and header size (beyond it MHD answers 414 or 431). */
#define CONNECTION_MEMORY    (32u * 1024u)
#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"

struct mph__http_server {
    struct MHD_Daemon *daemon;
    mph__http_handler_fn handler;
    void *opaque;
    uint16_t port;
    /* 1 between MHD_start_daemon() returning and MHD_stop_daemon() being
     * called: then only the web thread calls MHD's logger. */
    int running;
};

struct mph__http_request {
    struct MHD_Connection *conn;
    const char *method; /* MHD's, valid for the request */
    const char *path;   /* MHD's decoded URL, valid for the request */
    bool started;       /* the first access handler call is done */
    char raw_path[];    /* as received, query cut off */
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

/* ---- the web thread's name and MHD's log messages ---------------------- */

static _Thread_local bool t_named;
static _Thread_local mph_log_limit_t t_log_limit;

static void name_web_thread(void)
{
    if (!t_named) {
        mph_log_set_thread_name("web");
        t_named = true;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    mph__http_server_t *srv = cls;
    if (ck_pr_load_int(&srv->running))
        name_web_thread();
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    mph_log_limited(&t_log_limit, 1000, MPH_LOG_WARN, "http: %s", msg);
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
 * rejected malformed Content-Length values with 400. */
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

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    mph__http_server_t *srv = cls;
    mph__http_request_t *req = *req_cls;
    (void)version;
    (void)upload_data;
    name_web_thread();

    if (!req) /* the URI log callback could not allocate */
        return answer_static(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "out of memory\n", false);
    if (!req->started) {
        req->started = true;
        req->conn = conn;
        req->method = method;
        req->path = url;
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
            return answer_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                 "method not allowed\n", true);
        if (body_too_large(conn))
            return answer_static(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                 "request body too large\n", false);
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* a small body: read and dropped */
        return MHD_YES;
    }
    return answer_with_handler(srv, req);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    name_web_thread();
    if (!uri)
        uri = "";
    size_t n = strcspn(uri, "?");
    mph__http_request_t *req = calloc(1, sizeof *req + n + 1);
    if (!req)
        return NULL;
    memcpy(req->raw_path, uri, n);
    req->raw_path[n] = '\0';
    return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    name_web_thread();
    free(*req_cls);
    *req_cls = NULL;
}

/* ---- server ------------------------------------------------------------ */

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

    unsigned limit =
        cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNECTIONS;
    unsigned timeout = cfg->timeout_s ? cfg->timeout_s : DEFAULT_TIMEOUT_S;
    errno = 0;
    srv->daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
        cfg->port, NULL, NULL, on_access, srv,
        /* the logger first, so that start-up messages reach it too */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sin, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_END);
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
    ck_pr_store_int(&srv->running, 1);
    mph_log(MPH_LOG_INFO,
            "http: serving on %s:%u (max %u connections, %u s timeout)", addr,
            (unsigned)srv->port, limit, timeout);
    return srv;

fail_stop_daemon:
    MHD_stop_daemon(srv->daemon);
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
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

void mph__http_server_destroy(mph__http_server_t *srv)
{
    if (!srv)
        return;
    ck_pr_store_int(&srv->running, 0);
    MHD_stop_daemon(srv->daemon);
    free(srv);
}
