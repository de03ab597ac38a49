/*
 * blastbeat_ws_echo.c - minimal, fast BlastBeat WebSocket echo node (benchmark anchor).
 *
 * Protocol (README "WebSocket"): BlastBeat binds a ROUTER; the node connects a DEALER whose
 * identity is the vhost's `node` name. Frames in both directions: (sid, type, body).
 *
 *   uwsgi             the upgrade request. With the default `websocket-handshake = gateway` the
 *                     gateway has already sent the 101, so there is nothing to do. (A request
 *                     without "Upgrade: websocket" is answered 200 "Hello, World!", keep-alive,
 *                     which the benchmark's readiness check uses.)
 *   websocket         a text message         -> `websocket` with the same body (a text frame)
 *   websocket-binary  a binary message       -> `websocket-binary` with the same body
 *   ping              health check           -> `pong`
 *   end               the client went away   -> ignored
 *   body              (not sent for WebSocket) ignored
 *
 * Usage: blastbeat_ws_echo [endpoint] [identity]
 *   endpoint  default tcp://127.0.0.1:5000
 *   identity  default BENCH1
 *
 * Build: gcc -O2 -Wall -o blastbeat_ws_echo blastbeat_ws_echo.c -lzmq
 */
#include <zmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int s) { (void)s; stop_flag = 1; }

/* 1 if the uwsgi packet has HTTP_UPGRADE: websocket */
static int uwsgi_is_websocket(const unsigned char *p, size_t len) {
    size_t pos = 4; /* modifier1, size (le16), modifier2 */
    while (pos + 2 <= len) {
        size_t kl = p[pos] | (p[pos + 1] << 8);
        pos += 2;
        if (pos + kl + 2 > len) break;
        const char *k = (const char *)p + pos;
        pos += kl;
        size_t vl = p[pos] | (p[pos + 1] << 8);
        pos += 2;
        if (pos + vl > len) break;
        const char *v = (const char *)p + pos;
        pos += vl;
        if (kl == 12 && !memcmp(k, "HTTP_UPGRADE", 12))
            return vl == 9 && !strncasecmp(v, "websocket", 9);
    }
    return 0;
}

static int send3(void *s, const void *sid, size_t sid_len, const char *type, const void *body, size_t body_len) {
    if (zmq_send(s, sid, sid_len, ZMQ_SNDMORE) < 0) return -1;
    if (zmq_send(s, type, strlen(type), ZMQ_SNDMORE) < 0) return -1;
    if (zmq_send(s, body, body_len, 0) < 0) return -1;
    return 0;
}

/* send (sid, type, body) reusing the received sid/body messages without copying */
static int send_reply(void *s, zmq_msg_t *sid, const char *type, size_t tlen, zmq_msg_t *body) {
    if (zmq_msg_send(sid, s, ZMQ_SNDMORE) < 0) return -1;
    if (zmq_send(s, type, tlen, ZMQ_SNDMORE) < 0) return -1;
    if (zmq_msg_send(body, s, 0) < 0) return -1;
    return 0;
}

int main(int argc, char **argv) {
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5000";
    const char *identity = argc > 2 ? argv[2] : "BENCH1";

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!ctx || !s) { fprintf(stderr, "blastbeat_ws_echo: zmq: %s\n", zmq_strerror(zmq_errno())); return 1; }
    zmq_setsockopt(s, ZMQ_ROUTING_ID, identity, strlen(identity));
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    /* echoes are bounded by the clients' messages in flight: never drop or block on a queue limit */
    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof(zero));
    if (zmq_connect(s, endpoint)) { fprintf(stderr, "blastbeat_ws_echo: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno())); return 1; }
    fprintf(stderr, "blastbeat_ws_echo: identity=%s connected to %s\n", identity, endpoint);

    zmq_msg_t part[3];
    unsigned long upgrades = 0, http = 0, text = 0, bin = 0, pings = 0, ends = 0, other = 0, bad = 0;
    while (!stop_flag) {
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, 0) < 0) {
                zmq_msg_close(&m);
                if (zmq_errno() == EINTR) {
                    if (stop_flag) goto out;
                    continue;
                }
                fprintf(stderr, "blastbeat_ws_echo: recv: %s\n", zmq_strerror(zmq_errno()));
                goto out;
            }
            more = zmq_msg_more(&m);
            if (n < 3) part[n++] = m;
            else zmq_msg_close(&m);
        }
        if (n != 3) { bad++; goto next; }
        const char *type = zmq_msg_data(&part[1]);
        size_t tlen = zmq_msg_size(&part[1]);
        if (tlen == 9 && !memcmp(type, "websocket", 9)) {
            text++;
            send_reply(s, &part[0], "websocket", 9, &part[2]);
        } else if (tlen == 16 && !memcmp(type, "websocket-binary", 16)) {
            bin++;
            send_reply(s, &part[0], "websocket-binary", 16, &part[2]);
        } else if (tlen == 4 && !memcmp(type, "ping", 4)) {
            pings++;
            zmq_msg_close(&part[2]);
            zmq_msg_init(&part[2]);
            send_reply(s, &part[0], "pong", 4, &part[2]);
        } else if (tlen == 5 && !memcmp(type, "uwsgi", 5)) {
            if (uwsgi_is_websocket(zmq_msg_data(&part[2]), zmq_msg_size(&part[2]))) {
                upgrades++; /* the gateway already answered 101 (websocket-handshake = gateway) */
            } else {
                static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n";
                const void *sid = zmq_msg_data(&part[0]);
                size_t sid_len = zmq_msg_size(&part[0]);
                send3(s, sid, sid_len, "headers", hdr, sizeof hdr - 1);
                send3(s, sid, sid_len, "body", "Hello, World!", 13);
                http++;
            }
        } else if (tlen == 3 && !memcmp(type, "end", 3)) {
            ends++;
        } else {
            other++;
        }
next:
        for (int i = 0; i < n; i++) zmq_msg_close(&part[i]); /* (sent messages are empty now) */
    }
out:
    fprintf(stderr, "blastbeat_ws_echo: upgrades=%lu http=%lu text=%lu binary=%lu pings=%lu ends=%lu other=%lu bad=%lu\n",
            upgrades, http, text, bin, pings, ends, other, bad);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}
