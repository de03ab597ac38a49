#ifndef CNGHTTP2_SHIM_H
#define CNGHTTP2_SHIM_H
// nghttp2: HTTP/2 framing, HPACK and flow control for the client side of the gateway.
#include <nghttp2/nghttp2.h>
#endif
