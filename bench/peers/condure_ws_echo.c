/*
 * condure_ws_echo.c - minimal, fast ZHTTP stream-mode WebSocket echo handler for Condure.
 *
 * Sockets (as in condure_handler.c), relative to condure's --zclient-stream BASE:
 *   PULL   connect BASE-out         first packet of every session (the HTTP request)
 *   ROUTER connect BASE-out-stream  later packets of a session, addressed to our 'from' id
 *   XPUB   connect BASE-in          everything we send ("<condure-from> T<tnetstring>")
 * For tcp://HOST:PORT the three endpoints are PORT, PORT+1, PORT+2.
 *
 * ZHTTP WebSocket session (condure src/connection.rs + zhttppacket.rs):
 *   condure -> us  (PULL) data {from, id, seq:0, method GET, uri ws://..., headers, credits: N}
 *                  N = what we may send to condure (its write buffer) before it grants more.
 *   us -> condure         data {from: our id, id, seq:0, code:101, reason, credits: M}
 *                  accepts: condure writes the 101 (it computes Sec-WebSocket-Accept itself);
 *                  M = how many message bytes condure may send us before we grant more.
 *   condure -> us  (ROUTER) data {id, seq, content-type: "text"|"binary", body, [more]}
 *                  one per message (or fragment: more=true), costing len(body) of our credits;
 *                  credit {credits}  when condure has written our bytes to the client;
 *                  keep-alive; ping/pong {body}; close {code, body}; cancel; error.
 *   us -> condure         the echo: data {id, seq, content-type, body, [more], credits: len(body)}
 *                  (the same packet gives back the credits the message cost), keep-alive,
 *                  pong {body, credits}, close {code}.
 * Every packet we send for a session carries the next 'seq' of that session (condure checks it).
 * We never send more body bytes than condure granted: an echo that does not fit is queued until
 * a credit packet arrives. Condure drops a session that has not heard from us for 60 s
 * (ZHTTP_SESSION_TIMEOUT), so every session that has been quiet on our side for 20 s gets a
 * keep-alive (checked every 5 s); a keep-alive from condure is answered with one.
 * Condure's keep-alives may name several sessions ("id" is then a list of {id, seq} maps).
 *
 * A plain HTTP request (uri http://...) is answered 200 "Hello, World!" (handy for readiness).
 *
 * Build:  gcc -O2 -Wall -o condure_ws_echo condure_ws_echo.c -lzmq
 * Usage:  condure_ws_echo [-v] [-i HANDLER_ID] [BASE]      (BASE default ipc://client)
 */

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_ADDR 64          /* condure keeps addresses in ArrayVec<u8, 64> */
#define MAX_ID 64
#define TABLE_SIZE 32768     /* sessions (power of two); condure runs with --stream-maxconn 12000 */
#define IN_CREDITS 262144    /* what condure may send us per session before we give credits back */
#define KEEPALIVE_IDLE 20.0
#define KEEPALIVE_CHECK 5.0
#define DRAIN_BATCH 256

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static int verbose = 0;
static char hid[MAX_ADDR + 1];
static size_t hid_len;
static void *xpub;

/* ------------------------------------------------------------------ tnetstrings */

static long tns_next(const char *p, size_t n, const char **data, size_t *dlen, char *type)
{
    size_t i = 0, len = 0;
    while (i < n && i < 10 && p[i] >= '0' && p[i] <= '9') {
        len = len * 10 + (size_t)(p[i] - '0');
        i++;
    }
    if (i == 0 || i >= n || p[i] != ':')
        return -1;
    i++;
    if (n - i < len + 1)
        return -1;
    *data = p + i;
    *dlen = len;
    *type = p[i + len];
    return (long)(i + len + 1);
}

static long tns_int(const char *p, size_t n)
{
    long v = 0;
    int neg = 0;
    size_t i = 0;
    if (n > 0 && p[0] == '-') { neg = 1; i = 1; }
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) v = v * 10 + (p[i] - '0');
    return neg ? -v : v;
}

struct idref { const char *id; size_t len; };

struct packet {
    const char *from; size_t from_len;
    struct idref ids[128]; int nids;
    const char *type; size_t type_len;       /* NULL = data */
    const char *ctype; size_t ctype_len;     /* content-type */
    const char *body; size_t body_len;
    const char *uri; size_t uri_len;
    long credits, code;
    int more, has_code;
};

static int key_is(const char *k, size_t klen, const char *lit)
{
    size_t l = strlen(lit);
    return klen == l && memcmp(k, lit, l) == 0;
}

static int parse_packet(const char *buf, size_t size, struct packet *pk)
{
    const char *root, *k, *v;
    size_t rootlen, klen, vlen, off = 0;
    char t, kt, vt;
    memset(pk, 0, sizeof *pk);
    if (size < 1 || buf[0] != 'T')
        return -1;
    if (tns_next(buf + 1, size - 1, &root, &rootlen, &t) < 0 || t != '}')
        return -1;
    while (off < rootlen) {
        long c = tns_next(root + off, rootlen - off, &k, &klen, &kt);
        if (c < 0 || kt != ',') return -1;
        off += (size_t)c;
        c = tns_next(root + off, rootlen - off, &v, &vlen, &vt);
        if (c < 0) return -1;
        off += (size_t)c;
        if (key_is(k, klen, "from") && vt == ',') { pk->from = v; pk->from_len = vlen; }
        else if (key_is(k, klen, "id") && vt == ',') {
            pk->ids[0].id = v; pk->ids[0].len = vlen; pk->nids = 1;
        } else if (key_is(k, klen, "id") && vt == ']') {
            size_t o = 0;
            while (o < vlen && pk->nids < 128) {          /* list of {id, seq} maps */
                const char *m; size_t mlen; char mt;
                long cc = tns_next(v + o, vlen - o, &m, &mlen, &mt);
                if (cc < 0 || mt != '}') return -1;
                o += (size_t)cc;
                size_t mo = 0;
                while (mo < mlen) {
                    const char *mk, *mv; size_t mkl, mvl; char mkt, mvt;
                    long c2 = tns_next(m + mo, mlen - mo, &mk, &mkl, &mkt);
                    if (c2 < 0) return -1;
                    mo += (size_t)c2;
                    c2 = tns_next(m + mo, mlen - mo, &mv, &mvl, &mvt);
                    if (c2 < 0) return -1;
                    mo += (size_t)c2;
                    if (key_is(mk, mkl, "id") && mvt == ',') {
                        pk->ids[pk->nids].id = mv; pk->ids[pk->nids].len = mvl;
                    }
                }
                pk->nids++;
            }
        }
        else if (key_is(k, klen, "type") && vt == ',') { pk->type = v; pk->type_len = vlen; }
        else if (key_is(k, klen, "content-type") && vt == ',') { pk->ctype = v; pk->ctype_len = vlen; }
        else if (key_is(k, klen, "body") && vt == ',') { pk->body = v; pk->body_len = vlen; }
        else if (key_is(k, klen, "uri") && vt == ',') { pk->uri = v; pk->uri_len = vlen; }
        else if (key_is(k, klen, "credits") && vt == '#') pk->credits = tns_int(v, vlen);
        else if (key_is(k, klen, "code") && vt == '#') { pk->code = tns_int(v, vlen); pk->has_code = 1; }
        else if (key_is(k, klen, "more") && vt == '!') pk->more = vlen == 4 && !memcmp(v, "true", 4);
    }
    return 0;
}

/* writer: dict content goes to a scratch buffer, then "<to> T<len>:<content>}" */
struct wbuf { char *p; size_t n, cap; };

static void wb_reserve(struct wbuf *w, size_t more)
{
    if (w->n + more <= w->cap) return;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->n + more) cap *= 2;
    char *np = realloc(w->p, cap);
    if (!np) { fprintf(stderr, "condure_ws_echo: out of memory\n"); exit(1); }
    w->p = np;
    w->cap = cap;
}

static void wb_raw(struct wbuf *w, const void *d, size_t n) { wb_reserve(w, n); memcpy(w->p + w->n, d, n); w->n += n; }

static void wb_str(struct wbuf *w, const void *d, size_t n)
{
    char hdr[24];
    int h = snprintf(hdr, sizeof hdr, "%zu:", n);
    wb_reserve(w, (size_t)h + n + 1);
    memcpy(w->p + w->n, hdr, (size_t)h); w->n += (size_t)h;
    memcpy(w->p + w->n, d, n); w->n += n;
    w->p[w->n++] = ',';
}

static void wb_cstr(struct wbuf *w, const char *s) { wb_str(w, s, strlen(s)); }

static void wb_int(struct wbuf *w, long v)
{
    char num[24], hdr[8];
    int n = snprintf(num, sizeof num, "%ld", v);
    int h = snprintf(hdr, sizeof hdr, "%d:", n);
    wb_raw(w, hdr, (size_t)h);
    wb_raw(w, num, (size_t)n);
    wb_raw(w, "#", 1);
}

static struct wbuf scratch, out;

/* ------------------------------------------------------------------ sessions */

struct pending { struct pending *next; int binary, more; size_t len; char body[]; };

struct session {
    int used;                    /* 0 free, 1 live, 2 deleted (tombstone) */
    char id[MAX_ID]; size_t id_len;
    char to[MAX_ADDR]; size_t to_len;   /* condure's instance id ("from" of its packets) */
    uint32_t seq;                /* next seq we send */
    long out_credits;            /* bytes condure lets us send */
    double last_sent;
    struct pending *head, *tail;
};

static struct session *table;
static long live_sessions = 0;

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}

static struct session *lookup(const char *id, size_t n, int create)
{
    if (n == 0 || n > MAX_ID) return NULL;
    uint32_t i = hash(id, n) & (TABLE_SIZE - 1);
    struct session *tomb = NULL;
    for (uint32_t probe = 0; probe < TABLE_SIZE; probe++, i = (i + 1) & (TABLE_SIZE - 1)) {
        struct session *s = &table[i];
        if (s->used == 0) {
            if (!create) return NULL;
            if (!tomb) tomb = s;
            break;
        }
        if (s->used == 2) { if (!tomb) tomb = s; continue; }
        if (s->id_len == n && !memcmp(s->id, id, n)) return s;
    }
    if (!create || !tomb || live_sessions >= TABLE_SIZE * 3 / 4) return NULL;
    memset(tomb, 0, sizeof *tomb);
    tomb->used = 1;
    memcpy(tomb->id, id, n);
    tomb->id_len = n;
    live_sessions++;
    return tomb;
}

static void drop(struct session *s)
{
    struct pending *p = s->head;
    while (p) { struct pending *nx = p->next; free(p); p = nx; }
    s->head = s->tail = NULL;
    s->used = 2;
    if (--live_sessions == 0)
        memset(table, 0, TABLE_SIZE * sizeof *table);   /* no session left: clear the tombstones */
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* start a packet for session s: common fields; the caller adds the rest and calls finish() */
static void begin(struct session *s, const char *type)
{
    scratch.n = 0;
    wb_cstr(&scratch, "from");
    wb_str(&scratch, hid, hid_len);
    wb_cstr(&scratch, "id");
    wb_str(&scratch, s->id, s->id_len);
    wb_cstr(&scratch, "seq");
    wb_int(&scratch, (long)s->seq++);
    if (type) {
        wb_cstr(&scratch, "type");
        wb_cstr(&scratch, type);
    }
}

static void finish(struct session *s)
{
    char hdr[32];
    out.n = 0;
    wb_raw(&out, s->to, s->to_len);
    int h = snprintf(hdr, sizeof hdr, " T%zu:", scratch.n);
    wb_raw(&out, hdr, (size_t)h);
    wb_raw(&out, scratch.p, scratch.n);
    wb_raw(&out, "}", 1);
    while (zmq_send(xpub, out.p, out.n, 0) < 0 && zmq_errno() == EINTR && !stop_flag)
        ;
    s->last_sent = now_s();
}

static void send_echo(struct session *s, int binary, int more, const char *body, size_t len)
{
    begin(s, NULL);
    wb_cstr(&scratch, "content-type");
    wb_cstr(&scratch, binary ? "binary" : "text");
    if (len) {
        wb_cstr(&scratch, "body");
        wb_str(&scratch, body, len);
    }
    if (more) {
        wb_cstr(&scratch, "more");
        wb_raw(&scratch, "4:true!", 7);
    }
    if (len) {                    /* give back what this message cost */
        wb_cstr(&scratch, "credits");
        wb_int(&scratch, (long)len);
    }
    finish(s);
    s->out_credits -= (long)len;
}

static void flush_pending(struct session *s)
{
    while (s->head && (long)s->head->len <= s->out_credits) {
        struct pending *p = s->head;
        send_echo(s, p->binary, p->more, p->body, p->len);
        s->head = p->next;
        if (!s->head) s->tail = NULL;
        free(p);
    }
}

static void echo(struct session *s, int binary, int more, const char *body, size_t len)
{
    if (!s->head && (long)len <= s->out_credits) {
        send_echo(s, binary, more, body, len);
        return;
    }
    struct pending *p = malloc(sizeof *p + len);
    if (!p) { fprintf(stderr, "condure_ws_echo: out of memory\n"); exit(1); }
    p->next = NULL; p->binary = binary; p->more = more; p->len = len;
    memcpy(p->body, body, len);
    if (s->tail) s->tail->next = p; else s->head = p;
    s->tail = p;
    if (verbose) fprintf(stderr, "queued %zu bytes (credits %ld)\n", len, s->out_credits);
}

static void send_simple(struct session *s, const char *type)
{
    begin(s, type);
    finish(s);
}

/* ------------------------------------------------------------------ packet handling */

static unsigned long long n_ws = 0, n_http = 0, n_msgs = 0, n_ka = 0, n_bad = 0, n_closed = 0;

static void set_to(struct session *s, const struct packet *pk)
{
    if (pk->from && pk->from_len > 0 && pk->from_len <= MAX_ADDR && !memchr(pk->from, ' ', pk->from_len)) {
        memcpy(s->to, pk->from, pk->from_len);
        s->to_len = pk->from_len;
    }
}

/* first packet of a session (PULL) */
static void on_request(const char *buf, size_t size)
{
    struct packet pk;
    if (parse_packet(buf, size, &pk) < 0 || pk.nids != 1 || pk.type || !pk.from || pk.from_len == 0 ||
        pk.from_len > MAX_ADDR || memchr(pk.from, ' ', pk.from_len)) {
        n_bad++;
        return;
    }
    struct session tmp, *s;
    int websocket = pk.uri && pk.uri_len >= 5 && (!memcmp(pk.uri, "ws://", 5) || !memcmp(pk.uri, "wss:/", 5));
    if (!websocket) {                 /* one-shot HTTP answer, no session kept */
        memset(&tmp, 0, sizeof tmp);
        s = &tmp;
        if (pk.ids[0].len > MAX_ID) { n_bad++; return; }
        memcpy(s->id, pk.ids[0].id, pk.ids[0].len);
        s->id_len = pk.ids[0].len;
        set_to(s, &pk);
        begin(s, NULL);
        wb_cstr(&scratch, "code"); wb_int(&scratch, 200);
        wb_cstr(&scratch, "reason"); wb_cstr(&scratch, "OK");
        wb_cstr(&scratch, "headers");
        wb_raw(&scratch, "34:30:12:Content-Type,10:text/plain,]]", 38);
        wb_cstr(&scratch, "body"); wb_cstr(&scratch, "Hello, World!");
        finish(s);
        n_http++;
        return;
    }
    s = lookup(pk.ids[0].id, pk.ids[0].len, 1);
    if (!s) { n_bad++; fprintf(stderr, "condure_ws_echo: session table full or bad id\n"); return; }
    if (s->seq != 0) {                /* an id we still hold: start over */
        struct pending *p = s->head;
        while (p) { struct pending *nx = p->next; free(p); p = nx; }
        s->head = s->tail = NULL;
        s->seq = 0;
    }
    set_to(s, &pk);
    s->out_credits = pk.credits;
    begin(s, NULL);
    wb_cstr(&scratch, "code"); wb_int(&scratch, 101);
    wb_cstr(&scratch, "reason"); wb_cstr(&scratch, "Switching Protocols");
    wb_cstr(&scratch, "credits"); wb_int(&scratch, IN_CREDITS);
    finish(s);
    n_ws++;
    if (verbose)
        fprintf(stderr, "accept id=%.*s credits=%ld\n", (int)s->id_len, s->id, s->out_credits);
}

static int type_is(const struct packet *pk, const char *t)
{
    return pk->type && key_is(pk->type, pk->type_len, t);
}

/* later packets (ROUTER) */
static void on_stream(const char *buf, size_t size)
{
    struct packet pk;
    if (parse_packet(buf, size, &pk) < 0 || pk.nids < 1) { n_bad++; return; }
    if (verbose)
        fprintf(stderr, "IN %.*s\n", (int)(size > 300 ? 300 : size), buf);
    for (int i = 0; i < pk.nids; i++) {
        struct session *s = lookup(pk.ids[i].id, pk.ids[i].len, 0);
        if (!s) {
            if (verbose) fprintf(stderr, "no session %.*s\n", (int)pk.ids[i].len, pk.ids[i].id);
            continue;
        }
        set_to(s, &pk);
        if (!pk.type) {                                        /* a message (or fragment) */
            s->out_credits += pk.credits;
            int binary = pk.ctype && key_is(pk.ctype, pk.ctype_len, "binary");
            echo(s, binary, pk.more, pk.body ? pk.body : "", pk.body_len);
            if (!pk.more) n_msgs++;
        } else if (type_is(&pk, "credit")) {
            s->out_credits += pk.credits;
            flush_pending(s);
        } else if (type_is(&pk, "keep-alive")) {
            n_ka++;
            send_simple(s, "keep-alive");
        } else if (type_is(&pk, "ping")) {
            s->out_credits += pk.credits;
            begin(s, "pong");
            if (pk.body_len) { wb_cstr(&scratch, "body"); wb_str(&scratch, pk.body, pk.body_len); }
            if (pk.body_len) { wb_cstr(&scratch, "credits"); wb_int(&scratch, (long)pk.body_len); }
            finish(s);
        } else if (type_is(&pk, "pong")) {
            s->out_credits += pk.credits;
            if (pk.body_len) {            /* give back what it cost */
                begin(s, "credit");
                wb_cstr(&scratch, "credits"); wb_int(&scratch, (long)pk.body_len);
                finish(s);
            }
        } else if (type_is(&pk, "close")) {
            begin(s, "close");            /* answer the close handshake, then forget the session */
            if (pk.has_code) { wb_cstr(&scratch, "code"); wb_int(&scratch, pk.code); }
            finish(s);
            drop(s);
            n_closed++;
        } else if (type_is(&pk, "cancel") || type_is(&pk, "error")) {
            drop(s);
            n_closed++;
        } else if (type_is(&pk, "handoff-start")) {
            send_simple(s, "handoff-proceed");
        } else {
            n_bad++;
        }
    }
}

static void keepalive_sweep(void)
{
    double t = now_s();
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        struct session *s = &table[i];
        if (s->used == 1 && t - s->last_sent >= KEEPALIVE_IDLE)
            send_simple(s, "keep-alive");
    }
}

/* ------------------------------------------------------------------ main */

static int make_specs(const char *base, char *o, char *os, char *in, size_t cap)
{
    if (strncmp(base, "ipc:", 4) == 0) {
        snprintf(o, cap, "%s-out", base);
        snprintf(os, cap, "%s-out-stream", base);
        snprintf(in, cap, "%s-in", base);
        return 0;
    }
    if (strncmp(base, "tcp:", 4) == 0) {
        const char *c = strrchr(base, ':');
        char *end;
        long port = strtol(c + 1, &end, 10);
        if (c == base + 3 || *end != '\0' || port <= 0 || port > 65533)
            return -1;
        int hl = (int)(c - base);
        snprintf(o, cap, "%.*s:%ld", hl, base, port);
        snprintf(os, cap, "%.*s:%ld", hl, base, port + 1);
        snprintf(in, cap, "%.*s:%ld", hl, base, port + 2);
        return 0;
    }
    return -1;
}

static void die(const char *what)
{
    fprintf(stderr, "condure_ws_echo: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
}

int main(int argc, char **argv)
{
    const char *base = "ipc://client";
    int opt;
    snprintf(hid, sizeof hid, "wsecho.%d", (int)getpid());
    while ((opt = getopt(argc, argv, "vi:h")) != -1) {
        switch (opt) {
        case 'v': verbose = 1; break;
        case 'i':
            if (strlen(optarg) == 0 || strlen(optarg) > 48 || strchr(optarg, ' ')) {
                fprintf(stderr, "bad handler id\n");
                return 2;
            }
            snprintf(hid, sizeof hid, "%s", optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-v] [-i HANDLER_ID] [BASE]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind < argc) base = argv[optind];
    hid_len = strlen(hid);

    char ep_out[512], ep_out_stream[512], ep_in[512];
    if (make_specs(base, ep_out, ep_out_stream, ep_in, sizeof ep_out) < 0) {
        fprintf(stderr, "base must be ipc://... or tcp://host:port\n");
        return 2;
    }
    table = calloc(TABLE_SIZE, sizeof *table);
    if (!table) { perror("calloc"); return 1; }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    xpub = zmq_socket(ctx, ZMQ_XPUB);
    if (!ctx || !pull || !router || !xpub) die("socket");
    int zero = 0;
    zmq_setsockopt(pull, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(xpub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(xpub, ZMQ_SNDHWM, &zero, sizeof zero);   /* PUB drops at HWM: no limit */
    zmq_setsockopt(router, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_setsockopt(router, ZMQ_ROUTING_ID, hid, hid_len) != 0) die("ZMQ_ROUTING_ID");
    if (zmq_connect(pull, ep_out) != 0) die(ep_out);
    if (zmq_connect(router, ep_out_stream) != 0) die(ep_out_stream);
    if (zmq_connect(xpub, ep_in) != 0) die(ep_in);
    fprintf(stderr, "condure_ws_echo: id=%s pull=%s router=%s xpub=%s; waiting for condure subscription\n",
            hid, ep_out, ep_out_stream, ep_in);

    /* wait until condure's SUB has subscribed, so the first replies are not dropped */
    while (!stop_flag) {
        char sub[256];
        int n = zmq_recv(xpub, sub, sizeof sub, 0);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            die("xpub recv");
        }
        if (n > 1 && sub[0] == 1) {
            fprintf(stderr, "condure_ws_echo: subscribed by '%.*s' - ready\n", n - 1 > 255 ? 255 : n - 1, sub + 1);
            break;
        }
    }

    zmq_pollitem_t items[3] = {{pull, 0, ZMQ_POLLIN, 0}, {router, 0, ZMQ_POLLIN, 0}, {xpub, 0, ZMQ_POLLIN, 0}};
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    double next_sweep = now_s() + KEEPALIVE_CHECK;
    while (!stop_flag) {
        double t = now_s();
        if (t >= next_sweep) {
            keepalive_sweep();
            next_sweep = t + KEEPALIVE_CHECK;
        }
        long timeout_ms = (long)((next_sweep - t) * 1000) + 1;
        if (zmq_poll(items, 3, timeout_ms) < 0) {
            if (zmq_errno() == EINTR) continue;
            die("poll");
        }
        if (items[0].revents & ZMQ_POLLIN) {
            for (int i = 0; i < DRAIN_BATCH; i++) {
                if (zmq_msg_recv(&msg, pull, ZMQ_DONTWAIT) < 0) break;
                on_request((const char *)zmq_msg_data(&msg), zmq_msg_size(&msg));
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            /* [condure routing id][empty][packet]: the packet is the last frame */
            for (int i = 0; i < DRAIN_BATCH; i++) {
                if (zmq_msg_recv(&msg, router, ZMQ_DONTWAIT) < 0) break;
                if (!zmq_msg_more(&msg))
                    on_stream((const char *)zmq_msg_data(&msg), zmq_msg_size(&msg));
            }
        }
        if (items[2].revents & ZMQ_POLLIN) {
            for (int i = 0; i < DRAIN_BATCH; i++)
                if (zmq_msg_recv(&msg, xpub, ZMQ_DONTWAIT) < 0) break;
        }
    }
    fprintf(stderr, "condure_ws_echo: exiting; websocket=%llu http=%llu messages=%llu keepalives_in=%llu "
            "closed=%llu bad=%llu live=%ld\n", n_ws, n_http, n_msgs, n_ka, n_closed, n_bad, live_sessions);
    zmq_msg_close(&msg);
    zmq_close(pull);
    zmq_close(router);
    zmq_close(xpub);
    zmq_ctx_term(ctx);
    return 0;
}
