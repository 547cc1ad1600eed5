#!/usr/bin/env bash
# Gateway-overhead benchmark: the same closed-loop scenarios against
#   direct   - the mock upstream itself (the physical limit),
#   litellm  - the peer gateway (LiteLLM proxy 1.108.7, one worker),
#   hedgeway - our gateway (one worker, ledger on),
# measured in one sitting with the same pinning (mock + load generator on core 0, the gateway under
# test alone on core 1), then summarised as a markdown table in bench/results/overhead-<date>.md.
#
# usage: bash bench/overhead.sh [--repeats N] [--skip-peer] [--scenarios ns-c1,st-c1,...]
# Needs the shared harness set up once: /work/shared/bench/setup.sh peer
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"           # .../bench
REPO="$(cd "$HERE/.." && pwd)"
HARNESS="${HARNESS:-/work/shared/bench}"                         # read-only; writes go to $BENCH_WORK
export BENCH_WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/gateway-bench}"  # same default as the harness's common.sh

MOCK_URL=http://127.0.0.1:18000
PEER_PORT=4000
HW_PORT=4100
HW_CONFIG="$HERE/hedgeway-bench.yaml"
# The ledger path is fixed in hedgeway-bench.yaml (YAML cannot expand $BENCH_WORK); keep the two in sync.
HW_LEDGER=/tmp/gateway-bench/hedgeway-bench.db

REPEATS=3
SKIP_PEER=0
SCENARIOS=""
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --repeats)   REPEATS="${2:?--repeats needs a number}"; shift 2 ;;
    --repeats=*) REPEATS="${1#*=}"; shift ;;
    --skip-peer) SKIP_PEER=1; shift ;;
    --scenarios)   SCENARIOS="${2:?--scenarios needs a comma list}"; shift 2 ;;
    --scenarios=*) SCENARIOS="${1#*=}"; shift ;;
    -h|--help)   usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || { echo "--repeats must be a positive integer" >&2; exit 2; }

# --- preflight: fail before starting anything, with a hint, rather than half-way through ------------
need() { command -v "$1" >/dev/null || { echo "missing $1: run $HARNESS/setup.sh peer" >&2; exit 1; }; }
need nginx; need wrk; need taskset; need curl
[ "$SKIP_PEER" = 1 ] || [ -x "$BENCH_WORK/venv/bin/litellm" ] \
  || { echo "no LiteLLM venv in $BENCH_WORK/venv: run $HARNESS/setup.sh peer (or pass --skip-peer)" >&2; exit 1; }
# Resolve the real console script: a pyenv shim is a bash wrapper that would add start-up work and
# make the pid we record a shell until it execs.
HEDGEWAY_BIN="$(pyenv which hedgeway 2>/dev/null || command -v hedgeway)" \
  || { echo "hedgeway not installed (pip install -e $REPO)" >&2; exit 1; }
# A process already on a port would answer our health checks and be benchmarked by mistake.
for port in 18000 "$PEER_PORT" "$HW_PORT"; do
  if curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"; then
    echo "port $port is already in use; stop what runs there first ($HARNESS/stop_all.sh)" >&2; exit 1
  fi
done

mkdir -p "$BENCH_WORK/run" "$HERE/results" "$(dirname "$HW_LEDGER")"
STAMP="$(date +%Y%m%d-%H%M%S)"
RUNS="$BENCH_WORK/overhead-runs-$STAMP.jsonl"   # fresh per invocation: summarize.py medians everything in it
: > "$RUNS"
HW_LOG="$BENCH_WORK/hedgeway.log"
OUT_MD="$HERE/results/overhead-$(date +%F).md"

# Random per-run key: hedgeway-bench.yaml reads it via os.environ/HEDGEWAY_BENCH_KEY.
HEDGEWAY_BENCH_KEY="sk-bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export HEDGEWAY_BENCH_KEY

BENCH_ARGS=(--repeats "$REPEATS")
[ -n "$SCENARIOS" ] && BENCH_ARGS+=(--scenarios "$SCENARIOS")

# --- cleanup: everything we started, by pid, whatever way we exit -----------------------------------
HW_PID=""
stop_hedgeway() {
  [ -n "$HW_PID" ] || return 0
  if kill -0 "$HW_PID" 2>/dev/null; then
    kill -TERM "$HW_PID"                     # SIGTERM: the worker drains and flushes its ledger queue
    for _ in $(seq 1 100); do kill -0 "$HW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$HW_PID" 2>/dev/null && { echo "hedgeway ($HW_PID) ignored SIGTERM for 10 s; killing"; kill -KILL "$HW_PID"; }
  fi
  wait "$HW_PID" 2>/dev/null || true
  HW_PID=""
}
stop_peer() {  # only LiteLLM, by its recorded pid (stop_all.sh would also stop the mock)
  local f="$BENCH_WORK/run/litellm_$PEER_PORT.pid" pid
  [ -s "$f" ] || return 0
  pid="$(cat "$f")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}
cleanup() {
  local rc=$?
  stop_hedgeway
  "$HARNESS/stop_all.sh" >/dev/null 2>&1 || true   # mock (nginx) and any LiteLLM, by their pid files
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM                       # run the EXIT trap on Ctrl-C / kill too

log() { printf '\n=== %s  %s\n' "$(date +%T)" "$*"; }

# --- 1. mock upstream on core 0 (shared with the load generator) ------------------------------------
log "mock upstream (core 0)"
"$HARNESS/start_mock.sh" 0

# --- 2. direct: the baseline every gateway is compared with ------------------------------------------
log "direct -> $MOCK_URL"
"$HARNESS/run_bench.py" "$MOCK_URL" --label direct --d50-path /d50/v1/chat/completions \
  "${BENCH_ARGS[@]}" --json-out "$RUNS" 2>&1 | tee "$BENCH_WORK/bench-direct.out"

# --- 3. the peer, LiteLLM, alone on core 1 ------------------------------------------------------------
TARGETS=hedgeway
if [ "$SKIP_PEER" = 0 ]; then
  TARGETS=litellm,hedgeway
  log "litellm (1 worker, core 1)"
  "$HARNESS/start_litellm.sh" "$PEER_PORT" 1 1
  PEER_PID="$(cat "$BENCH_WORK/run/litellm_$PEER_PORT.pid")"
  PEER_KEY="$(grep -E '^\s+master_key:' "$HARNESS/litellm_config.yaml" | awk '{print $2}')"
  "$HARNESS/run_bench.py" "http://127.0.0.1:$PEER_PORT" --label litellm --auth "$PEER_KEY" --pid "$PEER_PID" \
    "${BENCH_ARGS[@]}" --json-out "$RUNS" 2>&1 | tee "$BENCH_WORK/bench-litellm.out"
  # Stop it now: it is pinned to the same core as our gateway and would steal its CPU.
  stop_peer
fi

# --- 4. hedgeway, alone on core 1 ----------------------------------------------------------------------
log "hedgeway (1 worker, core 1)"
rm -f "$HW_LEDGER" "$HW_LEDGER-wal" "$HW_LEDGER-shm" "$HW_LEDGER-journal"   # fresh ledger every run
# No pipe here: $! must be the gateway itself (taskset execs it), not a tee.
taskset -c 1 "$HEDGEWAY_BIN" serve --config "$HW_CONFIG" --port "$HW_PORT" > "$HW_LOG" 2>&1 &
HW_PID=$!
for i in $(seq 1 120); do
  if ! kill -0 "$HW_PID" 2>/dev/null; then
    echo "hedgeway exited during start-up; $HW_LOG says:" >&2; tail -30 "$HW_LOG" >&2; exit 1
  fi
  curl -sf -o /dev/null "http://127.0.0.1:$HW_PORT/healthz" && { echo "hedgeway up on :$HW_PORT (pid $HW_PID) after ${i}x0.25s"; break; }
  [ "$i" = 120 ] && { echo "hedgeway not healthy after 30 s; $HW_LOG says:" >&2; tail -30 "$HW_LOG" >&2; exit 1; }
  sleep 0.25
done
HW_AFFINITY="$(taskset -cp "$HW_PID" | awk -F': ' '{print $2}')"
# One real request first: a 401/404/502 here would otherwise show up as a table of fast "errors".
code="$(curl -s -o "$BENCH_WORK/hedgeway-smoke.json" -w '%{http_code}' "http://127.0.0.1:$HW_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $HEDGEWAY_BENCH_KEY" -H 'Content-Type: application/json' \
  -d '{"model":"fast","messages":[{"role":"user","content":"hi"}]}')"
[ "$code" = 200 ] || { echo "smoke request got HTTP $code: $(head -c 500 "$BENCH_WORK/hedgeway-smoke.json")" >&2; tail -30 "$HW_LOG" >&2; exit 1; }

"$HARNESS/run_bench.py" "http://127.0.0.1:$HW_PORT" --label hedgeway --auth "$HEDGEWAY_BENCH_KEY" --pid "$HW_PID" \
  "${BENCH_ARGS[@]}" --json-out "$RUNS" 2>&1 | tee "$BENCH_WORK/bench-hedgeway.out"

# Memory after the load: current and peak resident set of the (single) gateway process.
HW_RSS="$(awk '/^VmRSS/ {print $2, $3}' "/proc/$HW_PID/status")"
HW_HWM="$(awk '/^VmHWM/ {print $2, $3}' "/proc/$HW_PID/status")"
HW_PID_RUN="$HW_PID"                           # stop_hedgeway clears HW_PID; keep it for the report
# Stop it before writing the report so the ledger's final flush line is in the log.
stop_hedgeway

# --- 5. report -------------------------------------------------------------------------------------------
log "summary -> $OUT_MD"
LITELLM_VERSION="not run"
[ "$SKIP_PEER" = 0 ] && LITELLM_VERSION="$("$BENCH_WORK/venv/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}')"
GIT_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -1)" ] && GIT_REV="$GIT_REV (working tree modified)"
{
  echo "# Gateway overhead: direct vs ${TARGETS//,/ vs }"
  echo
  echo "- date: $(date '+%F %T %Z'); hedgeway $GIT_REV; LiteLLM $LITELLM_VERSION"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
  echo "- pinning: mock + load generator on core 0, gateway under test on core 1 (hedgeway affinity: $HW_AFFINITY), one worker each"
  echo "- repeats: $REPEATS; scenarios: ${SCENARIOS:-all}; 20 s per run after a 3 s warm-up; raw runs: \`$RUNS\`"
  echo "- streaming rows compare TTFB (time to first body chunk); \"(full)\" rows are the whole response"
  echo
  echo "## Medians"
  echo
  "$HARNESS/summarize.py" "$RUNS" --base direct --targets "$TARGETS" --md
  echo "## Errors (non-2xx + socket errors, summed over repeats)"
  echo
  python3 - "$RUNS" <<'PY'
import collections, json, sys
tot = collections.defaultdict(lambda: [0, 0])
for line in open(sys.argv[1]):
    r = json.loads(line); t = tot[(r["label"], r["scenario"])]; t[0] += r["errors"]; t[1] += r["requests"]
print("| target | scenario | errors | requests |"); print("|---|---|---|---|")
for (label, sc), (e, n) in tot.items():
    print(f"| {label} | {sc} | {e} | {n} |")
PY
  echo
  echo "## Hedgeway process memory (after the load)"
  echo
  echo "- VmRSS $HW_RSS, peak VmHWM $HW_HWM (one worker, pid $HW_PID_RUN)"
  echo
  echo "## Hedgeway log (\`$HW_LOG\`)"
  echo
  echo "- lines: $(wc -l < "$HW_LOG"); lines mentioning error/exception/traceback: $(grep -ciE 'error|exception|traceback' "$HW_LOG" || true)"
  echo
  echo '```'
  grep -iE 'error|exception|traceback|warn' "$HW_LOG" | sort | uniq -c | sort -rn | head -20 || true
  tail -3 "$HW_LOG"
  echo '```'
} > "$OUT_MD"
cat "$OUT_MD"
