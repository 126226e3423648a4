/*
 * The CLI's HTTP GET client (see webget.h). It reads only the replies of
 * mephisto's own web view (libmicrohttpd with in-memory responses): a status
 * line, headers, then Content-Length bytes or everything until the server
 * closes. Anything else is refused rather than guessed at.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "webget.h"

/* Replies larger than this are refused (a table value or /health). */
#define MAX_REPLY (64u << 20)

bool mph__cli_http_parse_url(const char *url, char *host, size_t host_size,
                             char *port, size_t port_size)
{
    if (strncmp(url, "http://", 7) == 0)
        url += 7;
    else if (strstr(url, "://"))
        return false;
    size_t hlen = strcspn(url, ":/");
    if (hlen == 0 || hlen >= host_size)
        return false;
    memcpy(host, url, hlen);
    host[hlen] = '\0';
    const char *p = url + hlen;
    if (*p != ':') {
        snprintf(port, port_size, "80");
        return *p == '\0' || *p == '/';
    }
    p++;
    size_t plen = strspn(p, "0123456789");
    if (plen == 0 || plen > 5 || plen >= port_size ||
        (p[plen] != '\0' && p[plen] != '/'))
        return false;
    memcpy(port, p, plen);
    port[plen] = '\0';
    long v = strtol(port, NULL, 10);
    return v >= 1 && v <= 65535;
}

static int remaining_ms(int64_t deadline_ns)
{
    int64_t left = deadline_ns - mph_clock_mono_ns();
    return left <= 0 ? 0 : (int)(left / 1000000) + 1;
}

/* Connects a non-blocking socket to host:port before the deadline.
 * Returns the fd or -1 with err set. */
static int connect_to(const char *host, const char *port, int64_t deadline_ns,
                      mph_err_t *err, char *errstr, size_t errstr_size)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(errstr, errstr_size, "%s: %s", host, gai_strerror(gai));
        *err = MPH_ERR_TRANSPORT;
        return -1;
    }
    int fd = -1;
    *err = MPH_ERR_TRANSPORT;
    snprintf(errstr, errstr_size, "%s:%s: no address", host, port);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            rc = poll(&pfd, 1, remaining_ms(deadline_ns));
            if (rc == 0) {
                snprintf(errstr, errstr_size, "%s:%s: no answer in time", host,
                         port);
                *err = MPH_ERR_TIMEOUT;
                close(fd);
                fd = -1;
                break;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (rc > 0 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0) {
                errno = soerr;
                rc = soerr ? -1 : 0;
            } else {
                rc = -1;
            }
        }
        if (rc == 0)
            break;
        snprintf(errstr, errstr_size, "%s:%s: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        *err = MPH_OK;
    return fd;
}

/* Waits until fd is ready for events or the deadline passes. */
static bool wait_fd(int fd, short events, int64_t deadline_ns)
{
    struct pollfd pfd = {fd, events, 0};
    int rc;
    do {
        rc = poll(&pfd, 1, remaining_ms(deadline_ns));
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

static mph_err_t send_all(int fd, const char *buf, size_t len,
                          int64_t deadline_ns, char *errstr, size_t errstr_size)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(errstr, errstr_size, "send: %s", strerror(errno));
            return MPH_ERR_TRANSPORT;
        }
        if (!wait_fd(fd, POLLOUT, deadline_ns)) {
            snprintf(errstr, errstr_size, "sending the request timed out");
            return MPH_ERR_TIMEOUT;
        }
    }
    return MPH_OK;
}

/* Reads until the peer closes. *buf is malloc'd and NUL-terminated. */
static mph_err_t read_all(int fd, char **buf, size_t *len, int64_t deadline_ns,
                          char *errstr, size_t errstr_size)
{
    size_t cap = 4096;
    *len = 0;
    *buf = malloc(cap);
    if (!*buf)
        return MPH_ERR_NOMEM;
    for (;;) {
        if (cap - *len < 2) {
            if (cap >= MAX_REPLY) {
                snprintf(errstr, errstr_size, "reply larger than %u bytes",
                         MAX_REPLY);
                return MPH_ERR_RANGE;
            }
            char *nb = realloc(*buf, cap * 2);
            if (!nb)
                return MPH_ERR_NOMEM;
            *buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, *buf + *len, cap - *len - 1, 0);
        if (n > 0) {
            *len += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        if (errno == ECONNRESET && *len > 0)
            break;
        if (errno != EAGAIN && errno != EINTR) {
            snprintf(errstr, errstr_size, "recv: %s", strerror(errno));
            return MPH_ERR_TRANSPORT;
        }
        if (!wait_fd(fd, POLLIN, deadline_ns)) {
            snprintf(errstr, errstr_size, "no complete reply in time");
            return MPH_ERR_TIMEOUT;
        }
    }
    (*buf)[*len] = '\0';
    return MPH_OK;
}

/* The value of header name (case-insensitive) in head, or NULL; *vlen is
 * its length without surrounding blanks. */
static const char *find_header(const char *head, size_t head_len,
                               const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *end = head + head_len;
    const char *line = memchr(head, '\n', head_len);
    while (line && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol < end ? eol : NULL;
    }
    return NULL;
}

/* Splits a whole reply into status and body. */
static mph_err_t parse_reply(char *buf, size_t len, mph_cli_http_reply_t *r,
                             char *errstr, size_t errstr_size)
{
    int status = 0;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 ||
        sscanf(buf + 8, " %3d", &status) != 1 || status < 100 || status > 599) {
        snprintf(errstr, errstr_size, "not an HTTP/1.x reply");
        return MPH_ERR_DECODE;
    }
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep) {
        snprintf(errstr, errstr_size, "the reply's headers are incomplete");
        return MPH_ERR_DECODE;
    }
    size_t head_len = (size_t)(sep - buf) + 2;
    char *body = sep + 4;
    size_t body_len = len - (size_t)(body - buf);
    size_t vlen;
    const char *te = find_header(buf, head_len, "Transfer-Encoding", &vlen);
    if (te && !(vlen == 8 && strncasecmp(te, "identity", 8) == 0)) {
        snprintf(errstr, errstr_size, "a chunked reply (not read here)");
        return MPH_ERR_UNSUPPORTED;
    }
    const char *cl = find_header(buf, head_len, "Content-Length", &vlen);
    if (cl) {
        char num[24];
        if (vlen == 0 || vlen >= sizeof num ||
            strspn(cl, "0123456789") < vlen) {
            snprintf(errstr, errstr_size, "a bad Content-Length");
            return MPH_ERR_DECODE;
        }
        memcpy(num, cl, vlen);
        num[vlen] = '\0';
        unsigned long long want = strtoull(num, NULL, 10);
        if (want > body_len) {
            snprintf(errstr, errstr_size,
                     "the reply ended after %zu of %llu body bytes", body_len,
                     want);
            return MPH_ERR_DECODE;
        }
        body_len = (size_t)want;
    }
    r->body = malloc(body_len + 1);
    if (!r->body)
        return MPH_ERR_NOMEM;
    memcpy(r->body, body, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    r->status = status;
    return MPH_OK;
}

mph_err_t mph__cli_http_get(const char *host, const char *port,
                            const char *path, int timeout_ms,
                            mph_cli_http_reply_t *reply, char *errstr,
                            size_t errstr_size)
{
    memset(reply, 0, sizeof *reply);
    int64_t deadline = mph_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    mph_err_t err;
    int fd = connect_to(host, port, deadline, &err, errstr, errstr_size);
    if (fd < 0)
        return err;
    size_t need = strlen(path) + strlen(host) + strlen(port) + 128;
    char *req = malloc(need);
    char *buf = NULL;
    size_t len = 0;
    if (!req) {
        err = MPH_ERR_NOMEM;
        goto out_fd;
    }
    int n = snprintf(req, need,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: */*\r\n"
                     "User-Agent: mephisto-cli\r\nConnection: close\r\n\r\n",
                     path, host, port);
    err = send_all(fd, req, (size_t)n, deadline, errstr, errstr_size);
    if (!err)
        err = read_all(fd, &buf, &len, deadline, errstr, errstr_size);
    if (!err)
        err = parse_reply(buf, len, reply, errstr, errstr_size);
    free(buf);
    free(req);
out_fd:
    close(fd);
    if (err == MPH_ERR_NOMEM)
        snprintf(errstr, errstr_size, "out of memory");
    return err;
}

void mph__cli_http_reply_free(mph_cli_http_reply_t *reply)
{
    free(reply->body);
    reply->body = NULL;
    reply->body_len = 0;
}

size_t mph__cli_url_encode(const void *bytes, size_t len, char *out,
                           size_t out_size)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *b = bytes;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = b[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                     c == '_' || c == '~';
        if (plain) {
            if (n + 1 < out_size)
                out[n] = (char)c;
            n++;
        } else {
            if (n + 3 < out_size) {
                out[n] = '%';
                out[n + 1] = hex[c >> 4];
                out[n + 2] = hex[c & 15];
            }
            n += 3;
        }
    }
    if (out_size)
        out[n < out_size ? n : out_size - 1] = '\0';
    return n;
}
