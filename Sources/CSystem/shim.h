// Linux calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module is built
// without. Declaring the prototype here (identical to glibc's) makes them callable.
#ifndef CSYSTEM_SHIM_H
#define CSYSTEM_SHIM_H
#include <sys/socket.h>
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
static inline int CSystem_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) { return accept4(fd, addr, len, flags); }
#endif
