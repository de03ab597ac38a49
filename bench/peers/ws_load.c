/*
 * ws_load.c - small epoll WebSocket echo load generator (no dependencies).
 *
 * Opens N connections to ws://HOST:PORT/PATH, performs the RFC 6455 upgrade on each (the answer
 * must be "101" with the right Sec-WebSocket-Accept), then keeps K messages of S bytes in flight
 * on every connection: each echoed message is answered by sending the next one. Client frames are
 * masked (a fresh mask per frame), text by default. After W seconds of warm-up it counts the echoed
 * messages for D seconds and prints messages/s, round-trip latency percentiles and errors.
 *
 * An echo is checked: it must be a complete message of the same type and S bytes whose first bytes
 * carry the sequence number that was sent (messages come back in order on a connection). Server
 * pings are answered with pongs; a server close, a protocol error, a wrong echo or a connection
 * error counts as an error and ends that connection.
 *
 * Usage: ws_load -p PORT [-h 127.0.0.1] [-P /] [-H Host] [-c 100] [-k 1] [-s 32] [-d 5] [-w 1]
 *                [-t 5] [-b] [-q]
 *   -c connections, -k messages in flight per connection, -s message size (bytes),
 *   -d measured seconds, -w warm-up seconds (not counted), -t connect+handshake timeout (s),
 *   -b binary messages instead of text, -q only the final JSON line.
 *
 * Output: human-readable lines, then one JSON line (the last line) with
 *   messages, seconds, messages_per_s, p50_us, p90_us, p99_us, max_us, errors (+ details), open.
 * Exit status: 0 ok; 1 connect/handshake failure (any connection); 2 usage; 3 internal time limit.
 *
 * Bounded: connect+handshake timeout, then exactly W + D seconds of load; alarm() ends the process
 * (status 3) if it is still running T + W + D + 10 seconds after the start.
 *
 * Build: gcc -O2 -Wall -o ws_load ws_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DEAD };

struct conn {
    int fd;
    int state;
    int want_out;          /* EPOLLOUT registered */
    unsigned char *rbuf;
    size_t rlen, rcap;
    unsigned char *wbuf;
    size_t woff, wlen, wcap;
    uint64_t *sent_ns;     /* ring of send times, K entries */
    unsigned head, count;  /* ring: oldest at head */
    uint32_t next_send, next_recv;
    /* fragmented message being received */
    int frag_op;           /* 0 = none */
    size_t frag_len;
    unsigned char frag_first[8];
    size_t frag_first_len;
    char key[32];
};

static struct conn *conns;
static int nconns = 100, inflight = 1, msg_size = 32, binary = 0, quiet = 0;
static double duration = 5, warmup = 1, conn_timeout = 5;
static const char *host = "127.0.0.1", *path = "/", *host_header = NULL;
static int port = 0;
static int epfd;
static uint64_t rng = 88172645463325252ull;

/* measurement */
static int measuring = 0;
static uint64_t counted = 0;
#define FINE_US 65536
#define COARSE_MS 120000
static uint32_t *hist_fine;   /* 1 µs bins below 65.536 ms */
static uint32_t *hist_coarse; /* 1 ms bins above */
static uint64_t hist_n = 0, lat_max = 0;
static uint64_t err_closed = 0, err_protocol = 0, err_mismatch = 0, err_io = 0;
static int open_count = 0;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xrand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "ws_load: internal time limit reached, exiting\n";
    if (write(2, m, sizeof(m) - 1) < 0) { /* nothing to do */ }
    _exit(3);
}

/* ---------------------------------------------------------------- SHA-1 + base64 (handshake) */

struct sha1 { uint32_t h[5]; uint64_t len; unsigned char buf[64]; size_t n; };

static uint32_t rol(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

static void sha1_block(struct sha1 *s, const unsigned char *p)
{
    uint32_t w[80], a, b, c, d, e, t;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        t = rol(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol(b, 30); b = a; a = t;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}

static void sha1(const unsigned char *data, size_t len, unsigned char out[20])
{
    struct sha1 s = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    s.len = len;
    while (len >= 64) { sha1_block(&s, data); data += 64; len -= 64; }
    memcpy(s.buf, data, len);
    s.n = len;
    s.buf[s.n++] = 0x80;
    if (s.n > 56) { memset(s.buf + s.n, 0, 64 - s.n); sha1_block(&s, s.buf); s.n = 0; }
    memset(s.buf + s.n, 0, 56 - s.n);
    uint64_t bits = s.len * 8;
    for (int i = 0; i < 8; i++) s.buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_block(&s, s.buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(s.h[i] >> 24); out[4 * i + 1] = (unsigned char)(s.h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s.h[i] >> 8); out[4 * i + 3] = (unsigned char)s.h[i];
    }
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = t[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
}

/* ---------------------------------------------------------------- connection helpers */

static void set_events(struct conn *c)
{
    struct epoll_event ev = {0};
    int want = c->state == ST_CONNECTING || c->wlen > c->woff;
    if (want == c->want_out)
        return;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void kill_conn(struct conn *c, uint64_t *counter, const char *why)
{
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_OPEN)
        open_count--;
    if (counter)
        (*counter)++;
    if (!quiet && why)
        fprintf(stderr, "ws_load: connection %d: %s\n", (int)(c - conns), why);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = ST_DEAD;
}

static int wreserve(struct conn *c, size_t more)
{
    if (c->woff > 0 && c->woff == c->wlen) { c->woff = c->wlen = 0; }
    if (c->wlen + more <= c->wcap)
        return 0;
    if (c->woff > 0) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
        if (c->wlen + more <= c->wcap)
            return 0;
    }
    size_t cap = c->wcap ? c->wcap : 4096;
    while (cap < c->wlen + more) cap *= 2;
    unsigned char *nb = realloc(c->wbuf, cap);
    if (!nb) return -1;
    c->wbuf = nb;
    c->wcap = cap;
    return 0;
}

/* append one masked client frame */
static int put_frame(struct conn *c, int opcode, const unsigned char *payload, size_t len)
{
    if (wreserve(c, len + 14) < 0) return -1;
    unsigned char *p = c->wbuf + c->wlen;
    size_t h = 0;
    p[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        p[h++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        p[h++] = 0x80 | 126; p[h++] = (unsigned char)(len >> 8); p[h++] = (unsigned char)len;
    } else {
        p[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) p[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    uint32_t m = (uint32_t)xrand();
    unsigned char mask[4] = {(unsigned char)(m >> 24), (unsigned char)(m >> 16), (unsigned char)(m >> 8), (unsigned char)m};
    memcpy(p + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) p[h + i] = payload[i] ^ mask[i & 3];
    c->wlen += h + len;
    return 0;
}

static unsigned char *msg_template;

static void seq_prefix(uint32_t seq, unsigned char *out, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[i] = (unsigned char)hx[(seq >> (4 * (7 - i))) & 15];
}

static int queue_message(struct conn *c, uint64_t t)
{
    size_t pre = msg_size < 8 ? (size_t)msg_size : 8;
    seq_prefix(c->next_send, msg_template, pre);
    if (put_frame(c, binary ? 2 : 1, msg_template, (size_t)msg_size) < 0)
        return -1;
    c->sent_ns[(c->head + c->count) % (unsigned)inflight] = t;
    c->count++;
    c->next_send++;
    return 0;
}

static void flush_out(struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) { c->woff += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        kill_conn(c, c->state == ST_OPEN ? &err_io : NULL, "send failed");
        return;
    }
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    set_events(c);
}

static void record_latency(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < FINE_US) hist_fine[us]++;
    else if (us / 1000 < COARSE_MS) hist_coarse[us / 1000]++;
    else hist_coarse[COARSE_MS - 1]++;
    hist_n++;
    if (us > lat_max) lat_max = us;
}

static uint64_t percentile(double p)
{
    if (hist_n == 0) return 0;
    uint64_t want = (uint64_t)(p * (double)hist_n + 0.999999), acc = 0;
    if (want < 1) want = 1;
    for (uint64_t i = 0; i < FINE_US; i++) { acc += hist_fine[i]; if (acc >= want) return i; }
    for (uint64_t i = FINE_US / 1000; i < COARSE_MS; i++) { acc += hist_coarse[i]; if (acc >= want) return i * 1000; }
    return lat_max;
}

/* a complete echoed message arrived */
static int got_message(struct conn *c, int opcode, size_t len, const unsigned char *first, size_t first_len, uint64_t t)
{
    if (c->count == 0) { kill_conn(c, &err_protocol, "message without a request in flight"); return -1; }
    size_t pre = msg_size < 8 ? (size_t)msg_size : 8;
    unsigned char want[8];
    seq_prefix(c->next_recv, want, pre);
    if (opcode != (binary ? 2 : 1) || len != (size_t)msg_size || first_len < pre || memcmp(first, want, pre) != 0) {
        char why[128];
        snprintf(why, sizeof why, "wrong echo (opcode %d, %zu bytes, expected seq %08x)", opcode, len, c->next_recv);
        kill_conn(c, &err_mismatch, why);
        return -1;
    }
    uint64_t sent = c->sent_ns[c->head];
    c->head = (c->head + 1) % (unsigned)inflight;
    c->count--;
    c->next_recv++;
    if (measuring) {
        counted++;
        record_latency(t - sent);
    }
    return 0;
}

/* parse complete frames in rbuf; returns number of completed messages (to be replaced), -1 if dead */
static int parse_frames(struct conn *c, uint64_t t)
{
    size_t off = 0;
    int done = 0;
    while (c->rlen - off >= 2) {
        unsigned char *p = c->rbuf + off;
        size_t avail = c->rlen - off, h = 2;
        int fin = p[0] & 0x80, op = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        if (p[0] & 0x70) { kill_conn(c, &err_protocol, "RSV bits set"); return -1; }
        if (p[1] & 0x80) { kill_conn(c, &err_protocol, "masked server frame"); return -1; }
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
            h = 10;
        }
        if (len > (uint64_t)msg_size + 1024 * 1024) { kill_conn(c, &err_protocol, "frame too large"); return -1; }
        if (avail < h + len) {
            if (h + len > c->rcap) {
                unsigned char *nb = realloc(c->rbuf, h + len + 4096);
                if (!nb) { kill_conn(c, &err_io, "out of memory"); return -1; }
                c->rbuf = nb;
                c->rcap = h + len + 4096;
            }
            break;
        }
        const unsigned char *pl = c->rbuf + off + h;
        if (op >= 8) {
            if (!fin || len > 125) { kill_conn(c, &err_protocol, "bad control frame"); return -1; }
            if (op == 9) {            /* ping -> pong */
                if (put_frame(c, 10, pl, (size_t)len) < 0) { kill_conn(c, &err_io, "out of memory"); return -1; }
            } else if (op == 8) {
                char why[96];
                int code = len >= 2 ? (pl[0] << 8 | pl[1]) : 0;
                snprintf(why, sizeof why, "closed by the server (code %d)", code);
                kill_conn(c, &err_closed, why);
                return -1;
            } else if (op != 10) {
                kill_conn(c, &err_protocol, "unknown control opcode");
                return -1;
            }
        } else if (op == 1 || op == 2) {
            if (c->frag_op) { kill_conn(c, &err_protocol, "new message inside a fragmented one"); return -1; }
            if (fin) {
                if (got_message(c, op, (size_t)len, pl, (size_t)len, t) < 0) return -1;
                done++;
            } else {
                c->frag_op = op;
                c->frag_len = (size_t)len;
                c->frag_first_len = len < 8 ? (size_t)len : 8;
                memcpy(c->frag_first, pl, c->frag_first_len);
            }
        } else if (op == 0) {
            if (!c->frag_op) { kill_conn(c, &err_protocol, "continuation without a message"); return -1; }
            if (c->frag_first_len < 8) {
                size_t take = 8 - c->frag_first_len;
                if (take > len) take = (size_t)len;
                memcpy(c->frag_first + c->frag_first_len, pl, take);
                c->frag_first_len += take;
            }
            c->frag_len += (size_t)len;
            if (fin) {
                int fop = c->frag_op;
                c->frag_op = 0;
                if (got_message(c, fop, c->frag_len, c->frag_first, c->frag_first_len, t) < 0) return -1;
                done++;
            }
        } else {
            kill_conn(c, &err_protocol, "unknown opcode");
            return -1;
        }
        off += h + (size_t)len;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return done;
}

static void send_handshake(struct conn *c)
{
    unsigned char raw[16];
    for (int i = 0; i < 16; i++) raw[i] = (unsigned char)xrand();
    base64(raw, 16, c->key);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     path, host_header, c->key);
    if (wreserve(c, (size_t)n) < 0) { kill_conn(c, NULL, "out of memory"); return; }
    memcpy(c->wbuf + c->wlen, req, (size_t)n);
    c->wlen += (size_t)n;
    c->state = ST_HANDSHAKE;
    flush_out(c);
}

/* returns 1 when the handshake completed, 0 if more input is needed, -1 on failure */
static int check_handshake(struct conn *c)
{
    unsigned char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) return c->rlen > 8192 ? -1 : 0;
    size_t hl = (size_t)(end - c->rbuf) + 4;
    char *head = malloc(hl + 1);
    if (!head) return -1;
    memcpy(head, c->rbuf, hl);
    head[hl] = 0;
    int ok = strncmp(head, "HTTP/1.1 101", 12) == 0;
    if (ok) {
        char in[64 + 36], accept[40];
        unsigned char dig[20];
        snprintf(in, sizeof in, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
        sha1((unsigned char *)in, strlen(in), dig);
        base64(dig, 20, accept);
        char *h = strcasestr(head, "\r\nSec-WebSocket-Accept:");
        ok = 0;
        if (h) {
            h += 23;
            while (*h == ' ' || *h == '\t') h++;
            ok = strncmp(h, accept, strlen(accept)) == 0;
        }
        if (!ok && !quiet) fprintf(stderr, "ws_load: wrong or missing Sec-WebSocket-Accept\n");
    } else if (!quiet) {
        char *eol = strstr(head, "\r\n");
        if (eol) *eol = 0;
        fprintf(stderr, "ws_load: handshake answered \"%.80s\"\n", head);
    }
    free(head);
    if (!ok) return -1;
    memmove(c->rbuf, c->rbuf + hl, c->rlen - hl);
    c->rlen -= hl;
    c->state = ST_OPEN;
    open_count++;
    return 1;
}

/* read what is there; returns -1 if the connection died */
static int read_in(struct conn *c)
{
    for (;;) {
        if (c->rlen == c->rcap) {
            unsigned char *nb = realloc(c->rbuf, c->rcap * 2);
            if (!nb) { kill_conn(c, &err_io, "out of memory"); return -1; }
            c->rbuf = nb;
            c->rcap *= 2;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            if (c->rlen < c->rcap) break; /* drained (short read) */
            continue;
        }
        if (n == 0) {
            kill_conn(c, c->state == ST_OPEN ? &err_closed : NULL, "connection closed by the server");
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        kill_conn(c, c->state == ST_OPEN ? &err_io : NULL, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s -p PORT [-h HOST] [-P PATH] [-H HOSTHEADER] [-c CONNS] [-k INFLIGHT] [-s SIZE]\n"
            "          [-d SECONDS] [-w WARMUP] [-t CONNECT_TIMEOUT] [-b] [-q]\n", argv0);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:h:P:H:c:k:s:d:w:t:bq")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'h': host = optarg; break;
        case 'P': path = optarg; break;
        case 'H': host_header = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'k': inflight = atoi(optarg); break;
        case 's': msg_size = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 't': conn_timeout = atof(optarg); break;
        case 'b': binary = 1; break;
        case 'q': quiet = 1; break;
        default: usage(argv[0]); return 2;
        }
    }
    if (port <= 0 || port > 65535 || nconns < 1 || inflight < 1 || msg_size < 1 || msg_size > 16 * 1024 * 1024 ||
        duration <= 0 || warmup < 0 || conn_timeout <= 0) {
        usage(argv[0]);
        return 2;
    }
    char hostbuf[300];
    if (!host_header) {
        snprintf(hostbuf, sizeof hostbuf, "%s:%d", host, port);
        host_header = hostbuf;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "ws_load: bad IPv4 address %s\n", host); return 2; }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)(conn_timeout + warmup + duration + 10.999));
    rng ^= (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);

    hist_fine = calloc(FINE_US, sizeof *hist_fine);
    hist_coarse = calloc(COARSE_MS, sizeof *hist_coarse);
    msg_template = malloc((size_t)msg_size);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!hist_fine || !hist_coarse || !msg_template || !conns) { perror("ws_load: malloc"); return 1; }
    for (int i = 0; i < msg_size; i++) msg_template[i] = (unsigned char)('a' + i % 26);

    epfd = epoll_create1(0);
    if (epfd < 0) { perror("ws_load: epoll_create1"); return 1; }

    uint64_t t0 = now_ns();
    uint64_t hs_deadline = t0 + (uint64_t)(conn_timeout * 1e9);
    int pending = 0, failed = 0;
    size_t rcap0 = (size_t)msg_size * 2 + 4096 > 65536 ? (size_t)msg_size * 2 + 4096 : 65536;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->rcap = rcap0;
        c->rbuf = malloc(c->rcap);
        c->sent_ns = calloc((size_t)inflight, sizeof *c->sent_ns);
        if (!c->rbuf || !c->sent_ns) { perror("ws_load: malloc"); return 1; }
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) { perror("ws_load: socket"); c->state = ST_DEAD; failed++; continue; }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->state = ST_CONNECTING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        c->want_out = 1;
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
            if (!quiet) fprintf(stderr, "ws_load: connect: %s\n", strerror(errno));
            kill_conn(c, NULL, NULL);
            failed++;
            continue;
        }
        pending++;
    }

    int maxev = 1024;
    struct epoll_event *evs = calloc((size_t)maxev, sizeof *evs);

    /* phase 1: connect + handshake on every connection */
    while (pending > 0 && !failed) {
        uint64_t t = now_ns();
        if (t >= hs_deadline) break;
        int ms = (int)((hs_deadline - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, maxev, ms);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state == ST_DEAD) continue;
            if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    if (!quiet) fprintf(stderr, "ws_load: connect: %s\n", strerror(err));
                    kill_conn(c, NULL, NULL); failed++; pending--; continue;
                }
                if (!(evs[i].events & (EPOLLOUT | EPOLLIN))) continue;
                send_handshake(c);
                if (c->state == ST_DEAD) { failed++; pending--; }
                continue;
            }
            if (evs[i].events & EPOLLOUT) flush_out(c);
            if (c->state == ST_DEAD) { failed++; pending--; continue; }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (read_in(c) < 0) { failed++; pending--; continue; }
                if (c->state == ST_HANDSHAKE) {
                    int r = check_handshake(c);
                    if (r < 0) { kill_conn(c, NULL, NULL); failed++; pending--; }
                    else if (r > 0) pending--;
                }
            }
        }
    }
    if (failed || pending) {
        fprintf(stderr, "ws_load: handshake failed: %d of %d connections failed, %d not upgraded yet%s\n",
                failed, nconns, pending, failed ? " (stopped at the first failure)" : " (connect timeout)");
        printf("{\"error\": \"handshake failed: %d of %d connections failed, %d not upgraded yet\"}\n",
               failed, nconns, pending);
        return 1;
    }
    uint64_t t_hs = now_ns();

    /* phase 2: load. Every connection starts with K messages in flight. */
    uint64_t t_measure = t_hs + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    measuring = warmup <= 0;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        uint64_t t = now_ns();
        for (int k = 0; k < inflight; k++) queue_message(c, t);
        flush_out(c);
    }
    uint64_t t_measure_real = measuring ? now_ns() : 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_measure) { measuring = 1; t_measure_real = t; }
        if (t >= t_end) break;
        if (open_count == 0) break;
        uint64_t next = measuring ? t_end : t_measure;
        int ms = (int)((next - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, maxev, ms);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != ST_OPEN) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (read_in(c) < 0) continue;
                uint64_t tr = now_ns();
                int done = parse_frames(c, tr);
                if (done < 0) continue;
                for (int k = 0; k < done; k++) queue_message(c, tr);
                if (c->wlen > c->woff) flush_out(c);
            } else if (evs[i].events & EPOLLOUT) {
                flush_out(c);
            }
        }
    }
    uint64_t t_stop = now_ns();
    double secs = (double)(t_stop - (t_measure_real ? t_measure_real : t_stop)) / 1e9;
    double rate = secs > 0 ? (double)counted / secs : 0;
    uint64_t errors = err_closed + err_protocol + err_mismatch + err_io;
    uint64_t p50 = percentile(0.50), p90 = percentile(0.90), p99 = percentile(0.99);
    if (!quiet) {
        printf("ws_load: %d connections, %d in flight each, %d-byte %s messages, %.1f s warm-up + %.2f s measured\n",
               nconns, inflight, msg_size, binary ? "binary" : "text", warmup, secs);
        printf("messages: %llu\nmessages/s: %.1f\n", (unsigned long long)counted, rate);
        printf("latency us: p50 %llu  p90 %llu  p99 %llu  max %llu\n", (unsigned long long)p50,
               (unsigned long long)p90, (unsigned long long)p99, (unsigned long long)lat_max);
        printf("errors: %llu (closed %llu, protocol %llu, wrong echo %llu, io %llu); open at the end %d/%d\n",
               (unsigned long long)errors, (unsigned long long)err_closed, (unsigned long long)err_protocol,
               (unsigned long long)err_mismatch, (unsigned long long)err_io, open_count, nconns);
    }
    printf("{\"connections\": %d, \"inflight\": %d, \"size\": %d, \"seconds\": %.3f, \"messages\": %llu, "
           "\"messages_per_s\": %.1f, \"p50_us\": %llu, \"p90_us\": %llu, \"p99_us\": %llu, \"max_us\": %llu, "
           "\"errors\": %llu, \"closed\": %llu, \"protocol\": %llu, \"wrong_echo\": %llu, \"io\": %llu, \"open\": %d}\n",
           nconns, inflight, msg_size, secs, (unsigned long long)counted, rate, (unsigned long long)p50,
           (unsigned long long)p90, (unsigned long long)p99, (unsigned long long)lat_max, (unsigned long long)errors,
           (unsigned long long)err_closed, (unsigned long long)err_protocol, (unsigned long long)err_mismatch,
           (unsigned long long)err_io, open_count);
    fflush(stdout);
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    return 0;
}
