// Linux calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module is built
// without. Declaring the prototype here (identical to glibc's) makes them callable.
#ifndef CSYSTEM_SHIM_H
#define CSYSTEM_SHIM_H
#include <sys/socket.h>
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
static inline int CSystem_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) { return accept4(fd, addr, len, flags); }
// struct ucred (SO_PEERCRED) is also _GNU_SOURCE-only: the same layout under our own name.
struct CSystem_ucred { int pid; unsigned int uid; unsigned int gid; };
static inline int CSystem_peercred(int fd, int *pid, unsigned int *uid) {
    struct CSystem_ucred cred;
    socklen_t length = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    return 0;
}

// glibc's malloc tuning (Sources/BlastBeatSystem/ProcessMemory.swift): <malloc.h> is not in Swift's Glibc module.
#include <malloc.h>
static inline int CSystem_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

// The privileged parent (Sources/BlastBeatSystem/PrivilegedChannel.swift): descriptors passed with SCM_RIGHTS,
// whose CMSG_* helpers are macros Swift cannot call.
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/signalfd.h>
#include <signal.h>
#define CSYSTEM_MAX_FDS 253
static inline long CSystem_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    struct iovec iov = { (void *)buf, len };
    struct msghdr msg;
    union { char space[CMSG_SPACE(sizeof(int) * CSYSTEM_MAX_FDS)]; struct cmsghdr align; } control;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        if (nfds > CSYSTEM_MAX_FDS) return -2;
        memset(&control, 0, sizeof control);
        msg.msg_control = control.space;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}
/// Receives bytes and any descriptors sent with them (close-on-exec); *nfds gets their count.
static inline long CSystem_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    struct iovec iov = { buf, len };
    struct msghdr msg;
    union { char space[CMSG_SPACE(sizeof(int) * CSYSTEM_MAX_FDS)]; struct cmsghdr align; } control;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof control.space;
    *nfds = 0;
    long n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = received[i]; else close(received[i]);
        }
    }
    return n;
}
static inline int CSystem_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_CLOEXEC); }
#include <fcntl.h>
extern int execvpe(const char *file, char *const argv[], char *const envp[]);
/// SIGUSR2 (Sources/BlastBeatSystem/Upgrade.swift): fork, then in the child only async-signal-safe calls (the
/// gateway may have threads): keep `fds` open across exec, unblock signals, exec `file` (searched in PATH when
/// it has no '/'). Returns the child's pid, or -1.
static inline int CSystem_spawn(const char *file, char *const argv[], char *const envp[], const int *fds, int nfds) {
    int pid = fork();
    if (pid != 0) return pid;
    for (int i = 0; i < nfds; i++) {
        int flags = fcntl(fds[i], F_GETFD);
        if (flags >= 0) fcntl(fds[i], F_SETFD, flags & ~FD_CLOEXEC);
    }
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    signal(SIGUSR2, SIG_DFL);
    execvpe(file, argv, envp);
    _exit(127);
}
// `workers = auto`: the CPUs this process may run on. sched_getaffinity and cpu_set_t's CPU_COUNT are
// _GNU_SOURCE-only; the mask is counted bit by bit here instead (a 1024-CPU mask, glibc's default size).
extern int sched_getaffinity(int pid, size_t cpusetsize, void *mask);
static inline int CSystem_available_cpus(void) {
    unsigned long mask[1024 / (8 * sizeof(unsigned long))];
    memset(mask, 0, sizeof mask);
    if (sched_getaffinity(0, sizeof mask, mask) != 0) return -1;
    int count = 0;
    for (size_t i = 0; i < sizeof mask / sizeof mask[0]; i++) count += __builtin_popcountl(mask[i]);
    return count;
}

// Counts shared by the worker processes (Sources/BlastBeatSystem/SharedVhostCounts.swift): one machine word
// each, in a MAP_SHARED mapping. Sequentially consistent, so that a worker's add is seen before its read of
// the other workers' counts (the take-then-check of SharedVhostCounts.take).
static inline long CSystem_atomic_add(long *word, long delta) { return __atomic_add_fetch(word, delta, __ATOMIC_SEQ_CST); }
static inline long CSystem_atomic_load(const long *word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }
static inline long CSystem_atomic_exchange(long *word, long value) { return __atomic_exchange_n(word, value, __ATOMIC_SEQ_CST); }

#endif
