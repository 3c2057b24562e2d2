#!/usr/bin/env bash
# One command on a fresh Debian/Ubuntu machine: install what is missing (Apache and its headers,
# Python's venv and headers, a C compiler for mod_wsgi), create .venv, install wsgidev, then
#   bash dev.sh demo   serve the bundled Django demo with 2 processes x 15 threads
#   bash dev.sh test   run the linters and the test suite
#   bash dev.sh compat the test suite on every platform of docs/compat.md (compat/run.sh)
#   bash dev.sh flakes the timing-sensitive tests, several rounds under load (compat/flakes.sh)
set -euo pipefail
cd "$(dirname "$0")"

what="${1:-}"
case "$what" in demo|test|compat|flakes) ;; *) echo "usage: bash dev.sh demo|test|compat|flakes" >&2; exit 2 ;; esac

missing=()
command -v apache2 >/dev/null || command -v httpd >/dev/null || missing+=(apache2)
command -v apxs >/dev/null || command -v apxs2 >/dev/null || missing+=(apache2-dev)
command -v gcc >/dev/null || missing+=(gcc)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
python3 - <<'PY' || missing+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
# The browser tests drive Debian's chromium (through Playwright's Python package).
if [ "$what" != demo ] && ! command -v chromium >/dev/null; then missing+=(chromium); fi
# ss, to see a request wait in a daemon's accept queue (tests/test_reload.py).
if [ "$what" != demo ] && ! command -v ss >/dev/null; then missing+=(iproute2); fi
# A real broker for the Celery worker beside the server (tests/test_services.py starts its own).
if [ "$what" != demo ] && ! command -v redis-server >/dev/null; then missing+=(redis-server); fi
# A real FUSE mount for the folders that send no change notifications (tests/test_mounts.py).
if [ "$what" != demo ] && ! command -v bindfs >/dev/null; then missing+=(bindfs); fi
# The container test (tests/test_container.py) builds a venv of Debian's own Python, outside
# /root, and mod_wsgi against it: that Python, its venv module and its headers.
if [ "$what" != demo ] && command -v apt-get >/dev/null; then
  if [ ! -x /usr/bin/python3 ]; then
    missing+=(python3 python3-venv python3-dev)
  else
    /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    /usr/bin/python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing+=(python3-dev)
  fi
fi
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "dev.sh: please install: ${missing[*]} (or your system's equivalents), then rerun" >&2
    exit 1
  fi
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The matrix (this machine, a Debian trixie tree, a pip-built Apache): compat/run.sh builds the rest.
if [ "$what" = compat ]; then exec bash compat/run.sh "${@:2}"; fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip

if [ "$what" = demo ]; then
  .venv/bin/python -m pip install -q -e '.[django]'
  cd demo
  ../.venv/bin/python manage.py migrate --noinput
  exec ../.venv/bin/wsgidev start --threads 15 --processes 2
fi

.venv/bin/python -m pip install -q -e '.[test]'
if [ "$what" = flakes ]; then exec bash compat/flakes.sh "${@:2}"; fi
.venv/bin/ruff format --check wsgidev tests
.venv/bin/ruff check wsgidev tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "${@:2}"
