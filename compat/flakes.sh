#!/usr/bin/env bash
# Find flakes before users do: the timing-sensitive tests (reloads, hand-overs, browsers, faults,
# the debugger's terminal, the workers beside the server), ROUNDS times in a row (default 5),
# each round beside a busy loop on one core (a loaded CI machine) and with 127.0.0.1:8000 held
# by another listener (the suite's conftest holds it when free). One line per round; logs in
# .compat/logs/flakes-N.log.
#
#   bash dev.sh flakes [ROUNDS] [pytest arguments...]     e.g. bash dev.sh flakes 20 -k hand_over
#                                                         (or bash dev.sh flakes -k hand_over: 5)
#
# Exits 1 if any round failed.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5
if [[ ${1:-} =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi  # else the arguments are pytest's
((rounds > 0)) || { echo "flakes: ROUNDS must be a whole number above 0, got '$rounds'" >&2; exit 2; }
timing=(
  tests/test_reload.py tests/test_standby.py tests/test_bytecode.py tests/test_livereload.py
  tests/test_faults.py tests/test_fault_battery.py tests/test_debugger.py tests/test_services.py
)
mkdir -p .compat/logs
hog=""
stop_hog() { if [ -n "$hog" ]; then kill "$hog" 2>/dev/null || true; wait "$hog" 2>/dev/null || true; hog=""; fi; }
trap stop_hog EXIT
trap 'stop_hog; echo "flakes: interrupted" >&2; exit 130' INT TERM
failed=0
for ((round = 1; round <= rounds; round++)); do
  timeout 3600 python3 -c 'while True: pass' &  # bounded: it ends by itself, whatever happens here
  hog=$!
  log=.compat/logs/flakes-$round.log
  started=$(date +%s)
  if env -u PYTHONDONTWRITEBYTECODE -u PYTHONUNBUFFERED \
      .venv/bin/python -m pytest -q -p no:cacheprovider "${timing[@]}" "$@" >"$log" 2>&1; then
    status=green
  else
    status=FAILED
    failed=$((failed + 1))
  fi
  stop_hog
  echo "flakes: round $round of $rounds $status in $(($(date +%s) - started)) s: $(tail -1 "$log")"
  [ "$status" = green ] || grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/flakes:   /' || true
done
echo "flakes: $((rounds - failed)) of $rounds rounds green"
((failed == 0))
