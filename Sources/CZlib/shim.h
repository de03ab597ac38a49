#ifndef CZLIB_SHIM_H
#define CZLIB_SHIM_H
#include <zlib.h>
// deflateInit2/inflateInit2 are macros (they pass the header's version and struct size).
static inline int CZlib_deflateInit2(z_streamp s, int level, int method, int windowBits, int memLevel, int strategy) {
    return deflateInit2(s, level, method, windowBits, memLevel, strategy);
}
static inline int CZlib_inflateInit2(z_streamp s, int windowBits) { return inflateInit2(s, windowBits); }
#endif
