import BlastBeatFuzzChecks
import CLibFuzzer

#if canImport(Glibc)
import Glibc
#endif

@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzChecks.workerReports(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

exit(CLibFuzzer_runDriver(CommandLine.argc, CommandLine.unsafeArgv))
