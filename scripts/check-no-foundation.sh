#!/usr/bin/env bash
# The gateway must not link Foundation: it would put its startup cost and
# allocation patterns on the hot path.
set -euo pipefail
bin=${1:?usage: check-no-foundation.sh BINARY}
if ldd "$bin" | grep -i foundation; then
  echo "FAIL: $bin links Foundation" >&2
  exit 1
fi
echo "ok: $bin does not link Foundation"
