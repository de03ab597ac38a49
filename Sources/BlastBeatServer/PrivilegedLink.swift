import BlastBeatCore
import BlastBeatSystem
import Glibc

/// The serving process's end of the channel to the privileged parent (PrivilegedParent.swift): reload and
/// upgrade requests go out; reload bundles, and the word that a new process took over, come in.
final class PrivilegedLink: IOWatcherDelegate {
    unowned(unsafe) let gateway: Gateway
    let channel: Int32
    private var watcher: IOWatcher! = nil
    private var receiver = BundleReceiver()

    init(gateway: Gateway, channel: Int32) {
        self.gateway = gateway
        self.channel = channel
        PrivilegedChannel.makeNonBlocking(channel)
        watcher = IOWatcher(loop: gateway.loop, fd: channel, delegate: self)
        watcher.watch(read: true, write: false)
    }

    func request(_ request: PrivilegedChannel.Request) -> Bool { PrivilegedChannel.request(request, on: channel) }

    /// Tells the parent this process serves: at the end of its start, and after each reload (the parent's
    /// `READY=1` with several workers waits for every worker's). A parent that is gone shows at the next read.
    func reportServing() { _ = request(.serving) }

    func ioReady(readable: Bool, writable: Bool) {
        while gateway.parent === self, receiveOne() {}
    }

    /// Handles one message; false when there is none (yet) or the channel closed.
    private func receiveOne() -> Bool {
        let outcome: BundleReceiver.Outcome
        do { outcome = try receiver.receive(from: channel) } catch {
            gateway.logger.error("privileged parent: \(error); reloads now read the files as uid \(getuid())")
            close()
            return false
        }
        switch outcome {
        case .waiting:
            return false
        case .replaced:
            gateway.stopAsReplaced()
        case .workerLink(let worker, let socket):
            gateway.router.attachWorkerLink(worker: worker, fd: socket)
        case .closed:
            // Killed (a parent that exits by itself waits for this process first): stop rather than serve on
            // as a process nobody supervises and that can no longer reload its root-only files.
            gateway.logger.error("the privileged parent is gone; stopping")
            close()
            gateway.signalReceived(SIGTERM)
            return false
        case .bundle(let bytes, let sockets):
            do {
                let bundle = try FileBundle.decode(bytes)
                gateway.reloadConfiguration(files: FileSource(.replaying, bundle: bundle), sockets: sockets)
            } catch {
                sockets.forEach(Posix.close)
                gateway.logger.error("SIGHUP: reload failed, nothing changed: a bundle from the privileged parent: \(error)")
            }
        }
        return true
    }

    private func close() {
        watcher.stop()
        Posix.close(channel)
        gateway.parent = nil
    }
}
