internal import CLibEV
import Glibc

/// The libev loop that owns every socket, timer and signal of the gateway (one thread only).
package final class EventLoop {
    let raw: OpaquePointer

    package init() {
        guard let loop = CLibEV_ev_default_loop() else {
            fatalError("libev: could not initialise the default loop (bad LIBEV_FLAGS?)")
        }
        self.raw = loop
    }

    /// Runs until `stop()` is called or no watcher is active.
    package func run() {
        _ = ev_run(raw, 0)
    }

    package func stop() {
        ev_break(raw, Int32(EVBREAK_ALL))
    }

    /// Handles what is ready now without waiting, then returns (for tests that drive the loop by hand).
    package func runReady() {
        _ = ev_run(raw, Int32(EVRUN_NOWAIT))
    }

    /// The loop's cached time in seconds (updated once per iteration, cheap to read).
    package var now: Double { ev_now(raw) }

    /// Refreshes `now` after long work inside one callback.
    package func updateNow() { ev_now_update(raw) }
}

/// Heap memory for one libev watcher struct, released with `free`. Every connection needs two;
/// `UnsafeMutablePointer.allocate` would take the runtime's aligned-allocation path (`memalign`,
/// about three times the instructions of `malloc`, whose 16-byte alignment is enough here).
private func allocateWatcher<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
    guard let raw = malloc(MemoryLayout<T>.size) else { fatalError("out of memory for a libev watcher") }
    return raw.bindMemory(to: T.self, capacity: 1)
}

/// Receives readiness of a file descriptor.
package protocol IOWatcherDelegate: AnyObject {
    func ioReady(readable: Bool, writable: Bool)
}

/// Receives expiry of a timer.
package protocol TimerWatcherDelegate: AnyObject {
    func timerFired(_ timer: TimerWatcher)
}

/// An `ev_io` watcher. The C struct is heap-allocated because libev keeps its address while the
/// watcher is active; its `data` field points back at this object (unretained: the owner keeps
/// the watcher alive and must call `stop()` before releasing it).
package final class IOWatcher {
    private let loop: EventLoop
    private let watcher: UnsafeMutablePointer<ev_io>
    private unowned(unsafe) let delegate: any IOWatcherDelegate
    package private(set) var fd: Int32
    private var events: Int32 = 0

    package init(loop: EventLoop, fd: Int32, delegate: any IOWatcherDelegate) {
        self.loop = loop
        self.fd = fd
        self.delegate = delegate
        self.watcher = allocateWatcher(ev_io.self)
        CLibEV_ev_io_init(watcher, ioWatcherCallback, fd, 0)
        CLibEV_ev_set_data(UnsafeMutableRawPointer(watcher), Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        ev_io_stop(loop.raw, watcher)
        free(watcher)
    }

    /// Sets which readiness to watch; a no-op when unchanged (the common case on the hot path).
    package func watch(read: Bool, write: Bool) {
        let wanted = (read ? Int32(EV_READ) : 0) | (write ? Int32(EV_WRITE) : 0)
        if wanted == events { return }
        events = wanted
        ev_io_stop(loop.raw, watcher)
        if wanted != 0 {
            CLibEV_ev_io_set(watcher, fd, wanted)
            ev_io_start(loop.raw, watcher)
        }
    }

    package func stop() {
        watch(read: false, write: false)
    }

    fileprivate func fire(_ revents: Int32) {
        // A strong reference for the duration of the callback: the delegate may drop the last
        // other reference to itself (a connection closing removes itself from the session table).
        let delegate: any IOWatcherDelegate = self.delegate
        delegate.ioReady(
            readable: revents & Int32(EV_READ) != 0, writable: revents & Int32(EV_WRITE) != 0)
    }
}

private func ioWatcherCallback(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let data = CLibEV_ev_data(UnsafeMutableRawPointer(w)) else { return }
    Unmanaged<IOWatcher>.fromOpaque(data).takeUnretainedValue().fire(revents)
}

/// A one-shot or repeating `ev_timer` (same ownership rules as `IOWatcher`).
package final class TimerWatcher {
    private let loop: EventLoop
    private let watcher: UnsafeMutablePointer<ev_timer>
    private unowned(unsafe) let delegate: any TimerWatcherDelegate
    /// Loop time at which the armed timer fires, or nil when stopped.
    package private(set) var firesAt: Double?

    package init(loop: EventLoop, delegate: any TimerWatcherDelegate) {
        self.loop = loop
        self.delegate = delegate
        self.watcher = allocateWatcher(ev_timer.self)
        CLibEV_ev_timer_init(watcher, timerWatcherCallback, 0, 0)
        CLibEV_ev_set_data(UnsafeMutableRawPointer(watcher), Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        ev_timer_stop(loop.raw, watcher)
        free(watcher)
    }

    /// (Re)arms the timer to fire `after` seconds from now, then every `repeat` seconds if > 0.
    package func start(after: Double, repeat interval: Double = 0) {
        ev_timer_stop(loop.raw, watcher)
        CLibEV_ev_timer_set(watcher, max(after, 0), interval)
        ev_timer_start(loop.raw, watcher)
        firesAt = loop.now + max(after, 0)
    }

    package func stop() {
        ev_timer_stop(loop.raw, watcher)
        firesAt = nil
    }

    fileprivate func fire() {
        if CLibEV_ev_is_active(UnsafeMutableRawPointer(watcher)) == 0 { firesAt = nil } else { firesAt = loop.now + watcher.pointee.`repeat` }
        let delegate: any TimerWatcherDelegate = self.delegate  // strong for the call, as in IOWatcher.fire
        delegate.timerFired(self)
    }
}

private func timerWatcherCallback(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    guard let w, let data = CLibEV_ev_data(UnsafeMutableRawPointer(w)) else { return }
    Unmanaged<TimerWatcher>.fromOpaque(data).takeUnretainedValue().fire()
}

/// Receives a POSIX signal, delivered by libev inside the loop (safe to do anything there).
package protocol SignalWatcherDelegate: AnyObject {
    func signalReceived(_ signal: Int32)
}

package final class SignalWatcher {
    private let loop: EventLoop
    private let watcher: UnsafeMutablePointer<ev_signal>
    private unowned(unsafe) let delegate: any SignalWatcherDelegate
    private let signal: Int32

    package init(loop: EventLoop, signal: Int32, delegate: any SignalWatcherDelegate) {
        self.loop = loop
        self.delegate = delegate
        self.signal = signal
        self.watcher = .allocate(capacity: 1)
        CLibEV_ev_signal_init(watcher, signalWatcherCallback, signal)
        CLibEV_ev_set_data(UnsafeMutableRawPointer(watcher), Unmanaged.passUnretained(self).toOpaque())
        ev_signal_start(loop.raw, watcher)
        // Signal watchers must not keep the loop alive on their own during shutdown.
        ev_unref(loop.raw)
    }

    deinit {
        ev_ref(loop.raw)
        ev_signal_stop(loop.raw, watcher)
        watcher.deallocate()
    }

    fileprivate func fire() { delegate.signalReceived(signal) }
}

private func signalWatcherCallback(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_signal>?, _ revents: Int32) {
    guard let w, let data = CLibEV_ev_data(UnsafeMutableRawPointer(w)) else { return }
    Unmanaged<SignalWatcher>.fromOpaque(data).takeUnretainedValue().fire()
}

/// Runs once per loop iteration, just before the loop blocks.
package protocol PrepareWatcherDelegate: AnyObject {
    func loopWillBlock()
}

/// An `ev_prepare` watcher: the gateway's "end of iteration" hook, where batched socket writes
/// are flushed and the edge-triggered ZeroMQ descriptor is re-checked.
package final class PrepareWatcher {
    private let loop: EventLoop
    private let watcher: UnsafeMutablePointer<ev_prepare>
    /// Started by `skipNextBlock`: an active idle watcher makes libev poll without waiting.
    private let idle: UnsafeMutablePointer<ev_idle>
    private unowned(unsafe) let delegate: any PrepareWatcherDelegate

    package init(loop: EventLoop, delegate: any PrepareWatcherDelegate) {
        self.loop = loop
        self.delegate = delegate
        self.watcher = .allocate(capacity: 1)
        self.idle = .allocate(capacity: 1)
        CLibEV_ev_prepare_init(watcher, prepareWatcherCallback)
        CLibEV_ev_set_data(UnsafeMutableRawPointer(watcher), Unmanaged.passUnretained(self).toOpaque())
        CLibEV_ev_idle_init(idle, idleWatcherCallback)
        ev_prepare_start(loop.raw, watcher)
        ev_unref(loop.raw)  // must not keep the loop alive by itself
    }

    deinit {
        ev_ref(loop.raw)
        ev_prepare_stop(loop.raw, watcher)
        ev_idle_stop(loop.raw, idle)
        watcher.deallocate()
        idle.deallocate()
    }

    /// Lets the coming poll return at once (work is left over from a bounded `loopWillBlock`), so
    /// `loopWillBlock` runs again after it instead of the loop sleeping on unfinished work.
    package func skipNextBlock() {
        ev_idle_start(loop.raw, idle)
    }

    fileprivate func fire() { delegate.loopWillBlock() }
}

private func prepareWatcherCallback(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_prepare>?, _ revents: Int32) {
    guard let w, let data = CLibEV_ev_data(UnsafeMutableRawPointer(w)) else { return }
    Unmanaged<PrepareWatcher>.fromOpaque(data).takeUnretainedValue().fire()
}

/// One shot: the idle watcher has done its job by keeping the poll from blocking.
private func idleWatcherCallback(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_idle>?, _ revents: Int32) {
    if let w { ev_idle_stop(loop, w) }
}
