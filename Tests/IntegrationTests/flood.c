/*
 * flood.c - tenant A's flood for the isolation tests (isolation.py, test_tenant_isolation.py).
 *
 * A load generator as strong as wrk (one epoll thread in C: the gateway, not the flood, must be what runs
 * out of CPU), but with what wrk lacks: each connection is bound to one of S loopback source addresses
 * (127.0.1.1, 127.0.1.2, ...), distinct clients as the gateway counts them.
 *
 * Modes (-m):
 *   surge      GET for HOST over and over on one keep-alive connection; when the gateway closes it (or
 *              refuses it), a new one at once. What wrk or a retry loop does: no back-off, Retry-After ignored.
 *   slowloris  the start of a head, then one byte every -i seconds, never finished; when the gateway closes
 *              the connection, a new one at once.
 *   hold       one GET, then another every -i seconds on the same connection; a new connection when closed.
 *
 * Prints "READY N" once N = -c connections are established (or after -r seconds), runs until SIGTERM, then
 * prints one JSON line: answers by status, connections opened, closed by the gateway, errors, and the
 * process's CPU seconds. A connect that fails is retried after 10 ms (the SYN was dropped or refused).
 *
 * Usage: flood -m MODE -p PORT -c CONNS [-s SOURCES] [-H HOST] [-i SECONDS] [-r RAMP]
 * Build: gcc -O2 -Wall -o flood flood.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

enum mode { SURGE, SLOWLORIS, HOLD };
enum state { IDLE_WAIT, CONNECTING, WAITING_ANSWER, PAUSED };

struct conn {
    int fd;
    enum state state;
    double next_at;        /* IDLE_WAIT: reconnect at; PAUSED: next send at; slowloris: next byte at */
    uint32_t source;       /* host-order IPv4 */
    size_t rlen;
    char rbuf[4096];
};

static volatile sig_atomic_t stopping = 0;
static enum mode mode;
static int port, nconns, nsources = 20;
static double interval = 1.0, ramp = 8.0;
static const char *host = "a.test";
static char request[256], partial[256];
static size_t request_len, partial_len;
static long opened, established, closed_by_peer, errors, status_counts[600], other_answers;
static int epfd;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_term(int sig) { (void)sig; stopping = 1; }

static void drop(struct conn *c, double retry_at) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = IDLE_WAIT;
    c->next_at = retry_at;
    c->rlen = 0;
}

static void start_connect(struct conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { errors++; c->next_at = now() + 0.01; return; }
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(c->source)};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
        errors++;
        close(fd);
        c->next_at = now() + 0.01;
        return;
    }
    c->fd = fd;
    c->state = CONNECTING;
    c->rlen = 0;
    opened++;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int send_all(struct conn *c, const char *data, size_t len) {
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n == (ssize_t)len) return 0;
    errors++;  /* a few hundred bytes into an empty socket buffer: short only when the peer is gone */
    drop(c, now() + 0.01);
    return -1;
}

static void connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { errors++; drop(c, now() + 0.01); return; }
    established++;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    if (mode == SLOWLORIS) {
        if (send_all(c, partial, partial_len) == 0) { c->state = PAUSED; c->next_at = now() + interval; }
    } else if (send_all(c, request, request_len) == 0) {
        c->state = WAITING_ANSWER;
    }
}

/* One complete answer at the start of rbuf: its length, status and whether it closes; 0 when incomplete. */
static size_t parse_answer(struct conn *c, int *status, int *closes) {
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = end + 4 - c->rbuf;
    *status = atoi(c->rbuf + 9);
    *closes = 0;
    long length = 0;
    for (char *line = memchr(c->rbuf, '\n', head); line && line < end; line = memchr(line + 1, '\n', end - line)) {
        if (strncasecmp(line + 1, "content-length:", 15) == 0) length = atol(line + 16);
        if (strncasecmp(line + 1, "connection:", 11) == 0 && strncasecmp(line + 12, " close", 6) == 0) *closes = 1;
    }
    if (c->rlen < head + (size_t)length) return 0;
    return head + length;
}

static void readable(struct conn *c) {
    for (;;) {
        if (c->rlen == sizeof c->rbuf) { errors++; drop(c, now()); return; }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            if (n == 0 || errno == ECONNRESET) closed_by_peer++; else errors++;
            drop(c, now());  /* closed by the gateway: a new connection at once */
            return;
        }
        if (n < 0) return;
        c->rlen += n;
        for (;;) {
            int status, closes;
            size_t used = parse_answer(c, &status, &closes);
            if (!used) break;
            if (status > 0 && status < 600) status_counts[status]++; else other_answers++;
            memmove(c->rbuf, c->rbuf + used, c->rlen - used);
            c->rlen -= used;
            if (closes || mode == SLOWLORIS) { closed_by_peer++; drop(c, now()); return; }
            if (mode == SURGE) {
                if (send_all(c, request, request_len) < 0) return;
            } else {
                c->state = PAUSED;
                c->next_at = now() + interval;
            }
        }
    }
}

static void timers(struct conn *conns, double t) {
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->next_at > t) continue;
        if (c->state == IDLE_WAIT) {
            start_connect(c);
        } else if (c->state == PAUSED) {
            if (mode == SLOWLORIS) {
                if (send_all(c, "x", 1) == 0) c->next_at = t + interval;
            } else if (send_all(c, request, request_len) == 0) {
                c->state = WAITING_ANSWER;
            }
        }
    }
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "m:p:c:s:H:i:r:")) != -1) {
        switch (opt) {
        case 'm': mode = !strcmp(optarg, "surge") ? SURGE : !strcmp(optarg, "slowloris") ? SLOWLORIS : HOLD; break;
        case 'p': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 's': nsources = atoi(optarg); break;
        case 'H': host = optarg; break;
        case 'i': interval = atof(optarg); break;
        case 'r': ramp = atof(optarg); break;
        default: fprintf(stderr, "usage: flood -m MODE -p PORT -c CONNS [-s N] [-H HOST] [-i S] [-r S]\n"); return 2;
        }
    }
    if (!port || nconns <= 0 || nsources <= 0 || nsources > 250) { fprintf(stderr, "flood: bad arguments\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)nconns + 64 && rl.rlim_max >= (rlim_t)nconns + 64) {
        rl.rlim_cur = nconns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    request_len = snprintf(request, sizeof request, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    partial_len = snprintf(partial, sizeof partial, "GET / HTTP/1.1\r\nHost: %s\r\nX-Slow: ", host);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    epfd = epoll_create1(0);
    struct conn *conns = calloc(nconns, sizeof *conns);
    double started = now();
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].source = 0x7f000100 + 1 + i % nsources;
        conns[i].state = IDLE_WAIT;
        conns[i].next_at = started + (double)i / nconns * 0.5;  /* opened over half a second, as a surge */
    }
    int ready = 0;
    struct epoll_event events[512];
    double last_timers = 0;
    while (!stopping) {
        int n = epoll_wait(epfd, events, 512, 5);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == CONNECTING) connected(c);
            else readable(c);
        }
        double t = now();
        if (t - last_timers >= 0.005) { timers(conns, t); last_timers = t; }
        if (!ready && (established >= nconns || t - started >= ramp)) {
            printf("READY %ld\n", established);
            fflush(stdout);
            ready = 1;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"opened\": %ld, \"established\": %ld, \"closed_by_gateway\": %ld, \"errors\": %ld, \"other\": %ld, "
           "\"cpu\": %.2f, \"seconds\": %.1f", opened, established, closed_by_peer, errors, other_answers, cpu,
           now() - started);
    for (int s = 0; s < 600; s++)
        if (status_counts[s]) printf(", \"%d\": %ld", s, status_counts[s]);
    printf("}\n");
    return 0;
}
