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
#endif
