#ifndef CSODIUM_SHIM_H
#define CSODIUM_SHIM_H
// libsodium, the library libzmq itself uses for CURVE: crypto_box (Curve25519, XSalsa20, Poly1305).
#include <sodium.h>
#endif
