#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H

/// Runs libFuzzer's command line driver over `LLVMFuzzerTestOneInput` (defined by the driver in Swift).
/// SwiftPM links every executable with `main` renamed to the module's own entry point, so libFuzzer's
/// `main` never runs; the driver's main.swift calls this instead (LLVMFuzzerRunDriver, LLVM 12+).
int CLibFuzzer_runDriver(int argc, char **argv);

#endif
