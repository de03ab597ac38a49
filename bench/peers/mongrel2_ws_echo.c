/*
 * mongrel2_ws_echo.c - minimal, fast Mongrel2 WebSocket echo handler (benchmark anchor).
 *
 * Mongrel2 protocol (as mongrel2_handler.c):
 *   request  (Mongrel2 PUSH -> handler PULL, from send_spec):
 *       "SENDER_UUID CONN_ID PATH LEN:HEADERS_JSON,LEN:BODY,"
 *   response (handler PUB -> Mongrel2 SUB, to recv_spec):
 *       "SENDER_UUID LEN:CONN_ID, BYTES"   (raw bytes for the client; empty = close)
 *
 * WebSocket (Mongrel2 >= 1.8, see its examples/ws/python/echo.py):
 *   METHOD "WEBSOCKET_HANDSHAKE"  the upgrade request; BODY is the Sec-WebSocket-Accept value that
 *                                 Mongrel2 computed. The handler sends the 101 response itself.
 *   METHOD "WEBSOCKET"            one frame from the client, unmasked: header FLAGS is its first
 *                                 byte in hex (FIN, RSV, opcode), BODY its payload. The handler
 *                                 sends raw, unmasked frames back.
 *   METHOD "JSON" {"type":"disconnect"}  the client went away: ignored.
 *   This echo sends every text/binary/continuation frame back with the same FLAGS, answers ping
 *   with pong, and answers close with close and then the empty message (close the connection).
 *
 * Any other request is answered 200 "Hello, World!" (keep-alive), handy for readiness checks.
 *
 * Usage: mongrel2_ws_echo [send_spec] [recv_spec]
 *   defaults tcp://127.0.0.1:9997 tcp://127.0.0.1:9996
 *
 * Build: gcc -O2 -Wall -o mongrel2_ws_echo mongrel2_ws_echo.c -lzmq
 */
#define _GNU_SOURCE
#include <zmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int s) { (void)s; stop_flag = 1; }

/* value of "KEY":"VALUE" in the flat JSON header object (exact-case key) */
static const char *json_value(const char *h, size_t hl, const char *key, size_t *vlen)
{
    char pat[64];
    int pl = snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = memmem(h, hl, pat, (size_t)pl);
    if (!p) return NULL;
    p += pl;
    const char *e = memchr(p, '"', (size_t)(h + hl - p));
    if (!e) return NULL;
    *vlen = (size_t)(e - p);
    return p;
}

static size_t frame_header(unsigned char *o, unsigned flags, size_t len)
{
    size_t h = 0;
    o[h++] = (unsigned char)flags;
    if (len < 126) {
        o[h++] = (unsigned char)len;
    } else if (len < 65536) {
        o[h++] = 126; o[h++] = (unsigned char)(len >> 8); o[h++] = (unsigned char)len;
    } else {
        o[h++] = 127;
        for (int i = 7; i >= 0; i--) o[h++] = (unsigned char)((unsigned long long)len >> (8 * i));
    }
    return h;
}

int main(int argc, char **argv)
{
    const char *send_spec = argc > 1 ? argv[1] : "tcp://127.0.0.1:9997";
    const char *recv_spec = argc > 2 ? argv[2] : "tcp://127.0.0.1:9996";
    static const char hello[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt(pull, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero); /* PUB drops at HWM: no limit */
    if (zmq_connect(pull, send_spec)) { perror("zmq_connect pull"); return 1; }
    if (zmq_connect(pub, recv_spec)) { perror("zmq_connect pub"); return 1; }
    fprintf(stderr, "mongrel2_ws_echo: PULL %s, PUB %s\n", send_spec, recv_spec);

    size_t out_cap = 65536;
    unsigned char *out = malloc(out_cap);
    if (!out) { perror("malloc"); return 1; }
    unsigned long handshakes = 0, frames = 0, http = 0, disconnects = 0, bad = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (!stop_flag) {
        if (zmq_msg_recv(&m, pull, 0) < 0) {
            if (zmq_errno() == EINTR) continue;
            fprintf(stderr, "mongrel2_ws_echo: recv: %s\n", zmq_strerror(zmq_errno()));
            break;
        }
        const char *p = zmq_msg_data(&m);
        size_t len = zmq_msg_size(&m);
        const char *end = p + len;
        const char *sp1 = memchr(p, ' ', len);                          /* SENDER */
        if (!sp1) { bad++; continue; }
        const char *id = sp1 + 1;                                       /* CONN_ID */
        const char *sp2 = memchr(id, ' ', (size_t)(end - id));
        if (!sp2) { bad++; continue; }
        const char *sp3 = memchr(sp2 + 1, ' ', (size_t)(end - (sp2 + 1))); /* PATH */
        if (!sp3) { bad++; continue; }
        char *colon;
        long hlen = strtol(sp3 + 1, &colon, 10);                        /* HEADERS netstring */
        if (*colon != ':' || hlen < 0 || colon + 1 + hlen + 1 > end) { bad++; continue; }
        const char *hdrs = colon + 1;
        const char *bp = hdrs + hlen + 1;                               /* BODY netstring */
        long blen = strtol(bp, &colon, 10);
        if (*colon != ':' || blen < 0 || colon + 1 + blen > end) { bad++; continue; }
        const char *body = colon + 1;

        size_t need = (size_t)(sp2 - p) + 64 + (size_t)blen + 256;
        if (need > out_cap) {
            while (out_cap < need) out_cap *= 2;
            unsigned char *nb = realloc(out, out_cap);
            if (!nb) { perror("realloc"); break; }
            out = nb;
        }
        size_t sender_len = (size_t)(sp1 - p), id_len = (size_t)(sp2 - id);
        int n = snprintf((char *)out, out_cap, "%.*s %zu:%.*s, ", (int)sender_len, p, id_len, (int)id_len, id);
        size_t prefix = (size_t)n;

        size_t mlen = 0;
        const char *method = json_value(hdrs, (size_t)hlen, "METHOD", &mlen);
        if (method && mlen == 9 && !memcmp(method, "WEBSOCKET", 9)) {
            size_t fl = 0;
            const char *fv = json_value(hdrs, (size_t)hlen, "FLAGS", &fl);
            char fb[16];
            if (!fv || fl == 0 || fl >= sizeof fb) { bad++; continue; }
            memcpy(fb, fv, fl);
            fb[fl] = 0;
            unsigned flags = (unsigned)strtoul(fb, NULL, 16) & 0xff;
            unsigned op = flags & 0x0f;
            frames++;
            if (op == 0x9) flags = (flags & 0xf0) | 0xA;          /* ping -> pong */
            else if (op == 0xA) continue;                         /* pong: nothing to do */
            n += (int)frame_header(out + n, flags, (size_t)blen);
            memcpy(out + n, body, (size_t)blen);
            n += (int)blen;
            zmq_send(pub, out, (size_t)n, 0);
            if (op == 0x8) zmq_send(pub, out, prefix, 0);         /* close: then drop the connection */
        } else if (method && mlen == 19 && !memcmp(method, "WEBSOCKET_HANDSHAKE", 19)) {
            handshakes++;
            n += snprintf((char *)out + n, out_cap - (size_t)n,
                          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %.*s\r\n\r\n", (int)blen, body);
            zmq_send(pub, out, (size_t)n, 0);
        } else if (method && mlen == 4 && !memcmp(method, "JSON", 4)) {
            disconnects++;
        } else {
            http++;
            memcpy(out + n, hello, sizeof hello - 1);
            n += (int)(sizeof hello - 1);
            zmq_send(pub, out, (size_t)n, 0);
        }
    }
    fprintf(stderr, "mongrel2_ws_echo: handshakes=%lu frames=%lu http=%lu disconnects=%lu bad=%lu\n",
            handshakes, frames, http, disconnects, bad);
    zmq_msg_close(&m);
    zmq_close(pull);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}
