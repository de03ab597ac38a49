#!/usr/bin/env bash
# Installs the Debian packages BlastBeat builds and tests with, only when some are missing.
# Usage: scripts/install-deps.sh [build|test|bench]
set -euo pipefail
what=${1:-build}
packages=(libzmq3-dev libev-dev libssl-dev zlib1g-dev libsodium-dev libnghttp2-dev pkg-config)
case "$what" in
  test) packages+=(curl python3-venv openssl gcc libc6-dev logrotate systemd nghttp2-client prometheus) ;;
  bench) packages+=(wrk nginx-light mongrel2-core condure curl python3-venv openssl gcc libc6-dev libssl-dev nghttp2-client) ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
