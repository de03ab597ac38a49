/*
 * tls_load.c - full-TLS-handshake load generator (OpenSSL, epoll, one thread).
 *
 * Keeps N connections busy. Each one: TCP connect to HOST:PORT, a TLS handshake that offers no
 * session (no session ID, no ticket, no PSK, so every handshake is a full one), one
 * "GET PATH HTTP/1.1" with "Connection: close", read the whole response (Content-Length), send
 * close_notify, close the socket, and start over on a new connection. Like wrk, each of the N
 * slots keeps one SSL object and SSL_clear()s it between connections (cheaper than SSL_new);
 * unlike wrk, it then drops the session the SSL object kept (SSL_set_session(ssl, NULL)). After W seconds of warm-up it counts completed connections for D seconds and prints
 * handshakes/s (= requests/s: one request per handshake), latency percentiles and errors.
 *
 * Why not wrk -H 'Connection: close': wrk reuses one SSL object per connection slot
 * (SSL_shutdown + SSL_clear), which keeps the session, so every reconnect offers the previous
 * session ticket and the server resumes it instead of running a full handshake.
 *
 * Every completed connection is checked: the handshake must not be a resumption, the answer must
 * be "HTTP/1.x 200" with a Content-Length body equal to -b BODY (default "Hello, World!"). Anything
 * else counts as an error; so do connect/handshake/read failures and connections that take longer
 * than -t seconds (wrk's --timeout).
 *
 * Usage: tls_load -p PORT [-h 127.0.0.1] [-P /] [-H Host] [-S SNI] [-c 50] [-d 5] [-w 0] [-t 2]
 *                 [-V 1.3|1.2] [-b BODY] [-q]
 *   -c connections kept busy, -d measured seconds, -w warm-up seconds (not counted),
 *   -t per-connection timeout (s), -S server name sent in SNI (default: the Host header without
 *   port, else "localhost"), -V pin the TLS version (default: negotiate TLS 1.2 or 1.3),
 *   -q only the final JSON line.
 *
 * Latency = connect() to the last byte of the response: TCP + TLS handshake + request + response.
 *
 * Output: human-readable lines, then one JSON line (the last line) with
 *   handshakes, seconds, handshakes_per_s, p50_us, p90_us, p99_us, max_us, errors (+ details),
 *   tls13, tls12 (handshakes counted per version), cipher (of the last one).
 * Exit status: 0 ok (at least one handshake completed); 1 none completed; 2 usage; 3 internal time
 * limit (alarm at W + D + 10 s).
 *
 * Build: gcc -O2 -Wall -o tls_load tls_load.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_WRITE, ST_READ };

#define RBUF 8192

struct conn {
    int fd;
    int state;
    uint32_t events;  /* registered with epoll */
    SSL *ssl;
    uint64_t start_ns;
    size_t rlen;
    char rbuf[RBUF];
};

static struct conn *conns;
static int nconns = 50, quiet = 0;
static double duration = 5, warmup = 0, conn_timeout = 2;
static const char *host = "127.0.0.1", *path = "/", *host_header = NULL, *sni = NULL, *body = "Hello, World!";
static int port = 0, pin_version = 0;
static int epfd;
static SSL_CTX *ctx;
static struct sockaddr_in sa;
static char request[1024];
static size_t request_len;

static int measuring = 0;
static uint64_t counted = 0, tls13 = 0, tls12 = 0;
static uint32_t *samples;  /* latency in µs of each counted connection */
static size_t nsamples = 0, capsamples = 0;
static uint64_t err_connect = 0, err_handshake = 0, err_closed = 0, err_response = 0, err_resumed = 0,
                err_timeout = 0;
static char cipher[64] = "";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "tls_load: internal time limit reached, exiting\n";
    if (write(2, m, sizeof(m) - 1) < 0) { /* nothing to do */ }
    _exit(3);
}

static void set_events(struct conn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void drop(struct conn *c, int graceful)
{
    if (c->ssl) {
        if (graceful)
            SSL_shutdown(c->ssl);  /* queue and send close_notify, like wrk; do not wait for the peer's */
        if (SSL_clear(c->ssl) == 1) {       /* ready for the next connection of this slot, */
            SSL_set_session(c->ssl, NULL);  /* without the session SSL_clear keeps: never resume */
        } else {
            SSL_free(c->ssl);
            c->ssl = NULL;
        }
        ERR_clear_error();
    }
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = ST_IDLE;
    c->rlen = 0;
}

static void fail(struct conn *c, uint64_t *counter, const char *why)
{
    if (measuring)
        (*counter)++;
    if (!quiet && measuring) {
        unsigned long e = ERR_peek_last_error();
        char buf[160] = "";
        if (e)
            ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "tls_load: connection %d: %s%s%s\n", (int)(c - conns), why, e ? ": " : "", buf);
    }
    ERR_clear_error();
    drop(c, 0);
}

static void start(struct conn *c)
{
    c->rlen = 0;
    c->start_ns = now_ns();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(c, &err_connect, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->events = EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e);
    c->state = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        fail(c, &err_connect, strerror(errno));
}

/* The response is complete: headers, then Content-Length bytes. 1 done, 0 need more, -1 bad. */
static int response_complete(struct conn *c)
{
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end)
        return c->rlen >= RBUF ? -1 : 0;
    size_t head = (size_t)(end - c->rbuf) + 4;
    long length = -1;
    for (char *p = c->rbuf; p < end; ) {
        char *nl = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!nl) nl = end;
        if ((size_t)(nl - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            length = strtol(p + 15, NULL, 10);
        p = nl + 2;
    }
    if (length < 0 || (size_t)length > RBUF - head)
        return -1;
    if (c->rlen < head + (size_t)length)
        return 0;
    if (c->rlen < 12 || strncmp(c->rbuf, "HTTP/1.", 7) != 0 || strncmp(c->rbuf + 8, " 200", 4) != 0)
        return -1;
    if ((size_t)length != strlen(body) || memcmp(c->rbuf + head, body, (size_t)length) != 0)
        return -1;
    return 1;
}

static void finished(struct conn *c)
{
    if (measuring) {
        counted++;
        if (SSL_version(c->ssl) == TLS1_3_VERSION) tls13++;
        else if (SSL_version(c->ssl) == TLS1_2_VERSION) tls12++;
        uint64_t us = (now_ns() - c->start_ns) / 1000;
        if (nsamples == capsamples) {
            capsamples = capsamples ? capsamples * 2 : 65536;
            samples = realloc(samples, capsamples * sizeof *samples);
            if (!samples) { perror("tls_load: realloc"); exit(1); }
        }
        samples[nsamples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        if (!cipher[0]) snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(c->ssl));
    }
    drop(c, 1);
}

/* Drive the connection as far as it goes without blocking. */
static void step(struct conn *c)
{
    for (;;) {
        int r, err;
        switch (c->state) {
        case ST_HANDSHAKE:
            r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                if (SSL_session_reused(c->ssl)) { fail(c, &err_resumed, "handshake resumed a session"); return; }
                c->state = ST_WRITE;
                continue;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
            if (err == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return; }
            fail(c, &err_handshake, "handshake failed");
            return;
        case ST_WRITE:
            r = SSL_write(c->ssl, request, (int)request_len);
            if (r > 0) { c->state = ST_READ; continue; }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
            if (err == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return; }
            fail(c, &err_closed, "write failed");
            return;
        case ST_READ:
            r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(RBUF - c->rlen));
            if (r > 0) {
                c->rlen += (size_t)r;
                int done = response_complete(c);
                if (done > 0) { finished(c); start(c); return; }
                if (done < 0) { fail(c, &err_response, "unexpected response"); return; }
                continue;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
            if (err == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return; }
            fail(c, &err_closed, "closed before the response was complete");
            return;
        default:
            return;
        }
    }
}

static void on_event(struct conn *c)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { fail(c, &err_connect, strerror(err)); return; }
        if (!c->ssl)
            c->ssl = SSL_new(ctx);
        if (!c->ssl) { fail(c, &err_handshake, "SSL_new"); return; }
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, sni);
        SSL_set_connect_state(c->ssl);
        c->state = ST_HANDSHAKE;
    }
    step(c);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t percentile(double p)
{
    if (!nsamples) return 0;
    size_t i = (size_t)(p * (double)nsamples);
    if (i >= nsamples) i = nsamples - 1;
    return samples[i];
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s -p PORT [-h HOST] [-P PATH] [-H HOSTHEADER] [-S SNI] [-c CONNS] [-d SECONDS]\n"
            "          [-w WARMUP] [-t TIMEOUT] [-V 1.3|1.2] [-b BODY] [-q]\n", argv0);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:h:P:H:S:c:d:w:t:V:b:q")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'h': host = optarg; break;
        case 'P': path = optarg; break;
        case 'H': host_header = optarg; break;
        case 'S': sni = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 't': conn_timeout = atof(optarg); break;
        case 'V':
            if (strcmp(optarg, "1.3") == 0) pin_version = TLS1_3_VERSION;
            else if (strcmp(optarg, "1.2") == 0) pin_version = TLS1_2_VERSION;
            else { usage(argv[0]); return 2; }
            break;
        case 'b': body = optarg; break;
        case 'q': quiet = 1; break;
        default: usage(argv[0]); return 2;
        }
    }
    if (port <= 0 || port > 65535 || nconns < 1 || duration <= 0 || warmup < 0 || conn_timeout <= 0) {
        usage(argv[0]);
        return 2;
    }
    char hostbuf[300], snibuf[300];
    if (!host_header) {
        snprintf(hostbuf, sizeof hostbuf, "%s:%d", host, port);
        host_header = hostbuf;
    }
    if (!sni) {
        snprintf(snibuf, sizeof snibuf, "%s", host_header);
        char *colon = strchr(snibuf, ':');
        if (colon) *colon = 0;
        struct in_addr ignored;
        sni = inet_pton(AF_INET, snibuf, &ignored) == 1 ? "localhost" : snibuf;  /* no IP literal in SNI */
    }
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, host_header);
    if (n <= 0 || (size_t)n >= sizeof request) { usage(argv[0]); return 2; }
    request_len = (size_t)n;
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "tls_load: bad IPv4 address %s\n", host); return 2; }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns * 2 + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)(warmup + duration + 10.999));

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { fprintf(stderr, "tls_load: SSL_CTX_new failed\n"); return 1; }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);  /* like wrk: the chain is not verified */
    SSL_CTX_set_min_proto_version(ctx, pin_version ? pin_version : TLS1_2_VERSION);
    if (pin_version) SSL_CTX_set_max_proto_version(ctx, pin_version);
    /* No client session cache, no tickets; and drop() forgets the session of each connection. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);

    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) { perror("tls_load: calloc"); return 1; }
    epfd = epoll_create1(0);
    if (epfd < 0) { perror("tls_load: epoll_create1"); return 1; }

    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    uint64_t timeout_ns = (uint64_t)(conn_timeout * 1e9);
    measuring = warmup <= 0;
    uint64_t t_measure_real = measuring ? t0 : 0;
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        start(&conns[i]);
    }
    struct epoll_event evs[256];
    uint64_t next_scan = t0 + 100000000ull;
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_measure) { measuring = 1; t_measure_real = t; }
        if (t >= t_end) break;
        if (t >= next_scan) {  /* timeouts, and restart slots whose connection failed */
            next_scan = t + 100000000ull;
            for (int i = 0; i < nconns; i++) {
                struct conn *c = &conns[i];
                if (c->state != ST_IDLE && t - c->start_ns > timeout_ns)
                    fail(c, &err_timeout, "timed out");
                if (c->state == ST_IDLE)
                    start(c);
            }
        }
        uint64_t next = measuring ? t_end : t_measure;
        if (next > next_scan) next = next_scan;
        int ms = (int)((next - t) / 1000000) + 1;
        int k = epoll_wait(epfd, evs, 256, ms);
        if (k < 0 && errno == EINTR) continue;
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != ST_IDLE) on_event(c);
        }
    }
    uint64_t t_stop = now_ns();
    double secs = (double)(t_stop - (t_measure_real ? t_measure_real : t_stop)) / 1e9;
    double rate = secs > 0 ? (double)counted / secs : 0;
    uint64_t errors = err_connect + err_handshake + err_closed + err_response + err_resumed + err_timeout;
    qsort(samples, nsamples, sizeof *samples, cmp_u32);
    uint64_t p50 = percentile(0.50), p90 = percentile(0.90), p99 = percentile(0.99);
    uint64_t mx = nsamples ? samples[nsamples - 1] : 0;
    if (!quiet) {
        printf("tls_load: %d connections, full handshakes, GET %s with Connection: close, SNI %s, "
               "%.1f s warm-up + %.2f s measured\n", nconns, path, sni, warmup, secs);
        printf("handshakes: %llu (TLS 1.3 %llu, TLS 1.2 %llu; %s)\nhandshakes/s: %.1f\n",
               (unsigned long long)counted, (unsigned long long)tls13, (unsigned long long)tls12,
               cipher[0] ? cipher : "-", rate);
        printf("latency us (connect to last byte): p50 %llu  p90 %llu  p99 %llu  max %llu\n",
               (unsigned long long)p50, (unsigned long long)p90, (unsigned long long)p99, (unsigned long long)mx);
        printf("errors: %llu (connect %llu, handshake %llu, closed %llu, bad response %llu, resumed %llu, "
               "timeout %llu)\n", (unsigned long long)errors, (unsigned long long)err_connect,
               (unsigned long long)err_handshake, (unsigned long long)err_closed, (unsigned long long)err_response,
               (unsigned long long)err_resumed, (unsigned long long)err_timeout);
    }
    printf("{\"connections\": %d, \"seconds\": %.3f, \"handshakes\": %llu, \"handshakes_per_s\": %.1f, "
           "\"p50_us\": %llu, \"p90_us\": %llu, \"p99_us\": %llu, \"max_us\": %llu, \"errors\": %llu, "
           "\"connect\": %llu, \"handshake\": %llu, \"closed\": %llu, \"bad_response\": %llu, \"resumed\": %llu, "
           "\"timeout\": %llu, \"tls13\": %llu, \"tls12\": %llu, \"cipher\": \"%s\"}\n",
           nconns, secs, (unsigned long long)counted, rate, (unsigned long long)p50, (unsigned long long)p90,
           (unsigned long long)p99, (unsigned long long)mx, (unsigned long long)errors,
           (unsigned long long)err_connect, (unsigned long long)err_handshake, (unsigned long long)err_closed,
           (unsigned long long)err_response, (unsigned long long)err_resumed, (unsigned long long)err_timeout,
           (unsigned long long)tls13, (unsigned long long)tls12, cipher);
    fflush(stdout);
    for (int i = 0; i < nconns; i++) {
        drop(&conns[i], 0);
        SSL_free(conns[i].ssl);
    }
    SSL_CTX_free(ctx);
    return counted ? 0 : 1;
}
