import Glibc
internal import CSystem

/// The gateway's own memory use, for the metrics (`blastbeat_resident_memory_bytes`).
package enum ProcessMemory {
    /// Gives large buffers back to the kernel when they are freed, so the resident size follows the bytes the
    /// memory budget (`max-buffered`) counts instead of their high-water mark.
    ///
    /// glibc serves allocations past its mmap threshold with their own mappings, unmapped on free, but raises
    /// the threshold each time such a mapping is freed (up to 32 MiB): after a burst of large output queues,
    /// later ones come from the heap, whose freed middle stays resident. The 20-slow-reader test
    /// (Tests/IntegrationTests/test_memory_budget.py) peaked at up to 96 MiB for a 32 MiB budget that way.
    /// Setting the threshold fixes it at 256 KiB: buffers that size and larger are mappings of their own.
    /// Smaller ones (request heads, keep-alive responses) stay on the heap, so the hot path is unchanged.
    package static func returnLargeBuffersWhenFreed() {
        _ = CSystem_set_mmap_threshold(256 * 1024)
    }

    /// Resident set size in bytes: the second field of `/proc/self/statm` (in pages) times the page size.
    /// nil when the file cannot be read (no /proc). One open and read per scrape, never on the hot path.
    package static func residentBytes() -> Int? {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var text = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let count = withUnsafeMutableBytes(of: &text) { buffer -> Int in
            while true {
                let n = read(fd, buffer.baseAddress, buffer.count)
                if n < 0 && errno == EINTR { continue }
                return n
            }
        }
        guard count > 0 else { return nil }
        return withUnsafeBytes(of: &text) { bytes -> Int? in
            // "SIZE RESIDENT SHARED ...": skip the first number, read the second.
            var i = 0
            while i < count && bytes[i] != 0x20 { i += 1 }
            i += 1
            var pages = 0
            var digits = 0
            while i < count, bytes[i] >= 0x30, bytes[i] <= 0x39, digits < 18 {
                pages = pages * 10 + Int(bytes[i] - 0x30)
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
    }
}
