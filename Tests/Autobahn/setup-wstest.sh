#!/usr/bin/env bash
# Vendored copy of /work/shared/tools/autobahn/setup-wstest.sh (run.sh uses the shared one when present).
# Builds a Python 2.7 virtualenv holding the Autobahn|Testsuite (`wstest`), the WebSocket conformance suite.
# wstest is Python 2 code: it installs from PyPI under Python 3 but does not run there. The machine image
# carries a CPython 2.7 under pyenv; this finds it (or takes PY27=/path/to/python2.7).
# Usage: setup-wstest.sh DEST_DIR      then: DEST_DIR/bin/wstest -m fuzzingclient -s spec.json
# Exit 3 when no Python 2.7 exists (say so loudly in the test output; do not pretend the suite passed).
set -euo pipefail
DEST=${1:?usage: setup-wstest.sh DEST_DIR}
if [ -x "$DEST/bin/wstest" ]; then exit 0; fi
PY27=${PY27:-}
if [ -z "$PY27" ]; then
  for c in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/2.7*/bin/python2.7 \
           "$(command -v python2.7 2>/dev/null || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys' 2>/dev/null && { PY27=$c; break; }
  done
fi
[ -n "$PY27" ] && [ -x "$PY27" ] || { echo "no Python 2.7 found: the Autobahn testsuite cannot run here" >&2; exit 3; }
TOOLS=$(mktemp -d)
trap 'rm -rf "$TOOLS"' EXIT
python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/pip" install -q 'virtualenv<20.22'   # the last virtualenv line that still creates 2.7 envs
"$TOOLS/venv/bin/virtualenv" -q -p "$PY27" --app-data "$TOOLS/appdata" "$DEST"
# The autobahntestsuite 25.10.1 sdist omits its requirements, so pip would install it bare: pin them.
"$DEST/bin/pip" install -q \
  'setuptools==44.0.0' 'txaio==2.1.0' 'incremental==16.10.1' 'pyOpenSSL==19.1.0' 'cryptography==3.3.2' \
  'Twisted==19.10.0' 'zope.interface==4.6.0' 'jinja2==2.11.3' 'markupsafe==1.1.1' 'Werkzeug==1.0.1' \
  'klein==17.10.0' 'service_identity==18.1.0' 'unittest2==1.1.0' 'six==1.16.0' \
  'autobahn[accelerate,twisted]==0.10.9' 'autobahntestsuite==25.10.1'
"$DEST/bin/wstest" -a >/dev/null
