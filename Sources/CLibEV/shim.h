// libev's watcher set-up is done with function-like macros that Swift cannot call.
// Each wrapper below is a one-line static inline function, so clang inlines it away.
#ifndef CLIBEV_SHIM_H
#define CLIBEV_SHIM_H
#include <ev.h>

typedef void (*CLibEV_io_cb)(struct ev_loop *loop, ev_io *w, int revents);
typedef void (*CLibEV_timer_cb)(struct ev_loop *loop, ev_timer *w, int revents);
typedef void (*CLibEV_signal_cb)(struct ev_loop *loop, ev_signal *w, int revents);
typedef void (*CLibEV_prepare_cb)(struct ev_loop *loop, ev_prepare *w, int revents);
typedef void (*CLibEV_idle_cb)(struct ev_loop *loop, ev_idle *w, int revents);

static inline void CLibEV_ev_io_init(ev_io *w, CLibEV_io_cb cb, int fd, int events) { ev_io_init(w, cb, fd, events); }
static inline void CLibEV_ev_io_set(ev_io *w, int fd, int events) { ev_io_set(w, fd, events); }
static inline void CLibEV_ev_timer_init(ev_timer *w, CLibEV_timer_cb cb, double after, double repeat) { ev_timer_init(w, cb, after, repeat); }
static inline void CLibEV_ev_timer_set(ev_timer *w, double after, double repeat) { ev_timer_set(w, after, repeat); }
static inline void CLibEV_ev_signal_init(ev_signal *w, CLibEV_signal_cb cb, int signum) { ev_signal_init(w, cb, signum); }
static inline void CLibEV_ev_prepare_init(ev_prepare *w, CLibEV_prepare_cb cb) { ev_prepare_init(w, cb); }
static inline void CLibEV_ev_idle_init(ev_idle *w, CLibEV_idle_cb cb) { ev_idle_init(w, cb); }
static inline int CLibEV_ev_is_active(void *w) { return ev_is_active((ev_watcher *)w); }
static inline void *CLibEV_ev_data(void *w) { return ((ev_watcher *)w)->data; }
static inline void CLibEV_ev_set_data(void *w, void *data) { ((ev_watcher *)w)->data = data; }
static inline struct ev_loop *CLibEV_ev_default_loop(void) { return ev_default_loop(EVFLAG_AUTO); }
#endif
