/*
 * LD_PRELOAD allocation counter for the allocations-per-request test.
 *
 * Counts malloc/calloc/realloc/posix_memalign/aligned_alloc made by the process's main thread
 * (the gateway's event loop; libzmq's I/O thread allocates on its own and is not our hot path),
 * and writes the total to the file named by $MALLOC_COUNTER_OUT when the process exits.
 * Build: gcc -O2 -shared -fPIC -o malloc_counter.so malloc_counter.c -ldl
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long long count;
static pid_t main_pid;

static inline void note(void) {
    if (main_pid == 0) main_pid = getpid();
    if ((pid_t)syscall(SYS_gettid) == main_pid) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
int posix_memalign(void **out, size_t align, size_t n) {
    note();
    void *p = __libc_memalign(align, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) { note(); return __libc_memalign(align, n); }

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("MALLOC_COUNTER_OUT");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%llu\n", count);
    fclose(f);
}
