#!/usr/bin/env bash
# bash compat/hide.sh PATH... -- COMMAND...: run COMMAND with each PATH covered by an empty folder
# or file. Meant for a private mount namespace (unshare --mount): nothing changes outside it.
set -euo pipefail
empty=$(mktemp -d)
while (($#)) && [ "$1" != -- ]; do
  if [ -d "$1" ] && [ ! -L "$1" ]; then mount --bind "$empty" "$1"; else mount --bind /dev/null "$1"; fi
  shift
done
shift
rmdir "$empty" 2>/dev/null || true
exec env -u PYTHONDONTWRITEBYTECODE -u PYTHONUNBUFFERED "$@"
