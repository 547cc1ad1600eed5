#!/usr/bin/env bash
# Before/after overhead in one sitting: two Hedgeway installs (say, the previous release and this checkout)
# take turns on core 1 in front of the shared nginx mock, against the same direct baseline, so a change on
# the request path is judged by ratios measured minutes apart instead of against figures from another day.
#
# usage: bash bench/overhead_ab.sh BEFORE_BIN AFTER_BIN [--repeats N] [--duration S] [--scenarios ns-c1,...]
#   BEFORE_BIN / AFTER_BIN: the `hedgeway` console scripts of two virtualenvs, e.g.
#   git worktree add /tmp/hw-before <rev> && python3 -m venv /tmp/hw-before/.venv \
#     && /tmp/hw-before/.venv/bin/pip install -e /tmp/hw-before   -> /tmp/hw-before/.venv/bin/hedgeway
# Runs alternate before, after, before, after… (N rounds) so drift in machine load hits both alike.
# Needs the shared harness set up once: /work/shared/bench/setup.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESS="${HARNESS:-/work/shared/bench}"
export BENCH_WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/gateway-bench}"
BEFORE="${1:?usage: overhead_ab.sh BEFORE_BIN AFTER_BIN [--repeats N] [--scenarios LIST]}"
AFTER="${2:?usage: overhead_ab.sh BEFORE_BIN AFTER_BIN [--repeats N] [--scenarios LIST]}"
shift 2
REPEATS=2
DURATION=10
SCENARIOS=ns-c1,ns-c16,ns50-c64,st-c1,st-c16
while [ $# -gt 0 ]; do
  case "$1" in
    --repeats) REPEATS="${2:?}"; shift 2 ;;
    --scenarios) SCENARIOS="${2:?}"; shift 2 ;;
    --duration) DURATION="${2:?}"; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
for bin in "$BEFORE" "$AFTER"; do [ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 2; }; done

PORT=4100
LEDGER=/tmp/gateway-bench/hedgeway-bench.db   # fixed in hedgeway-bench.yaml
HEDGEWAY_BENCH_KEY="sk-bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export HEDGEWAY_BENCH_KEY
mkdir -p "$BENCH_WORK/run" "$HERE/results" "$(dirname "$LEDGER")"
RUNS="$BENCH_WORK/overhead-ab-$(date +%Y%m%d-%H%M%S).jsonl"
: > "$RUNS"
PID=""
stop_gateway() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  PID=""
}
trap 'stop_gateway; "$HARNESS/stop_all.sh" >/dev/null 2>&1 || true' EXIT

"$HARNESS/start_mock.sh" 0
"$HARNESS/run_bench.py" http://127.0.0.1:18000 --label direct --d50-path /d50/v1/chat/completions \
  --scenarios "$SCENARIOS" --repeats 1 --duration "$DURATION" --json-out "$RUNS"

run() {  # label bin
  rm -f "$LEDGER" "$LEDGER-wal" "$LEDGER-shm"
  taskset -c 1 "$2" serve --config "$HERE/hedgeway-bench.yaml" --port "$PORT" > "$BENCH_WORK/ab-$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 120); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.25; done
  "$HARNESS/run_bench.py" "http://127.0.0.1:$PORT" --label "$1" --auth "$HEDGEWAY_BENCH_KEY" --pid "$PID" \
    --scenarios "$SCENARIOS" --repeats 1 --duration "$DURATION" --json-out "$RUNS"
  echo "$1 RSS after load: $(awk '/^VmRSS/ {print $2, $3}' "/proc/$PID/status")"
  stop_gateway
}
for _ in $(seq 1 "$REPEATS"); do run before "$BEFORE"; run after "$AFTER"; done

OUT="$HERE/results/overhead-ab-$(date +%F).md"
{
  echo "# Hedgeway before vs after, one sitting ($(date '+%F %T %Z'))"
  echo
  echo "- before: \`$BEFORE\`; after: \`$AFTER\`; rounds: $REPEATS (alternating), $DURATION s per run after a 3 s warm-up; scenarios: $SCENARIOS"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "$HARNESS/summarize.py" "$RUNS" --base direct --targets before,after --md
} > "$OUT"
cat "$OUT"
