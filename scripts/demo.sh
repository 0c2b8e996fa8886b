#!/usr/bin/env bash
# The embedded demo: builds reelq, starts the provider simulator and one
# worker (which embeds NATS JetStream and archives outputs into its object
# store), publishes examples/demo.jsonl with enqueue --wait, prints the
# jobs' statuses, one result event and the queue statistics, downloads the
# archived outputs, and stops everything.
#
# It also starts the web dashboard (read-only) on DASHBOARD_LISTEN; set
# DEMO_DASHBOARD_WAIT=1 to keep it open after the batch, until Ctrl-C.
#
# Ports: PROVIDERSIM_ADDR (127.0.0.1:8089), REELQ_LISTEN (127.0.0.1:4222) and
# DASHBOARD_LISTEN (127.0.0.1:8090). Set KEEP=1 to keep the data directory
# and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SIM_ADDR=${PROVIDERSIM_ADDR:-127.0.0.1:8089}
LISTEN=${REELQ_LISTEN:-127.0.0.1:4222}
DASH_ADDR=${DASHBOARD_LISTEN:-127.0.0.1:8090}
JOBS=${DEMO_JOBS:-examples/demo.jsonl}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reelq-demo.XXXXXX")
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 150); do port_open "$1" && return 0; sleep 0.1; done
  echo "demo: nothing listening on $1 after 15s; logs:" >&2; tail -n 20 "$WORK"/*.log >&2; exit 1
}
for a in "$SIM_ADDR" "$LISTEN" "$DASH_ADDR"; do
  if port_open "$a"; then echo "demo: $a is already in use; set PROVIDERSIM_ADDR / REELQ_LISTEN / DASHBOARD_LISTEN to free ports" >&2; exit 1; fi
done

echo "== building"
$GO build -o bin/ ./cmd/worker ./cmd/enqueue ./cmd/providersim ./cmd/dashboard

echo "== provider simulator on $SIM_ADDR (every provider's API; tasks take 2-4 s)"
bin/providersim -addr "$SIM_ADDR" -api-key demo-key -complete-after 2s -jitter 2s >"$WORK/providersim.log" 2>&1 &
pids+=($!)
wait_port "$SIM_ADDR"

echo "== worker with embedded NATS JetStream on $LISTEN (log: $WORK/worker.log)"
export NATS_URL="nats://$LISTEN"
# providersim prints every provider's P_BASE_URL=... on its first lines.
for _ in $(seq 1 100); do grep -q '_BASE_URL=' "$WORK/providersim.log" && break; sleep 0.1; done
for kv in $(grep -o '[A-Z0-9]*_BASE_URL=[^ ]*' "$WORK/providersim.log"); do
  p=${kv%%_BASE_URL=*}
  export "$kv" "${p}_API_KEY=demo-key" "${p}_RATE=10" "${p}_BURST=5" \
         "${p}_MAX_INFLIGHT=4" "${p}_POLL_INTERVAL=500ms" "${p}_MAX_POLL_INTERVAL=2s"
done
# The simulator serves its output files on loopback: let the archiver
# fetch from it (the default refuses internal addresses).
NATS_URL= REELQ_LISTEN="$LISTEN" REELQ_DATA_DIR="$WORK/data" LOG_FORMAT=text \
  REELQ_ARCHIVE=jetstream REELQ_ARCHIVE_ALLOW_HOSTS="${SIM_ADDR%:*}" \
  bin/worker >"$WORK/worker.log" 2>&1 &
pids+=($!)
wait_port "$LISTEN"
# enqueue exits 5 until the worker has created the streams.
for _ in $(seq 1 100); do bin/enqueue stats -o json >/dev/null 2>&1 && break; sleep 0.1; done

echo "== dashboard on http://$DASH_ADDR/ (read-only; log: $WORK/dashboard.log)"
DASHBOARD_LISTEN="$DASH_ADDR" bin/dashboard >"$WORK/dashboard.log" 2>&1 &
pids+=($!)
dash_pid=$!
wait_port "$DASH_ADDR"

batch=$(basename "$JOBS"); batch=${batch%.*}
echo "== enqueue --wait $JOBS (batch $batch)"
status=0
bin/enqueue --wait --out "$WORK/results.jsonl" "$JOBS" || status=$?

echo
echo "== status --batch $batch ($(wc -l <"$WORK/results.jsonl") result events on results.<provider>.<job_id>)"
bin/enqueue status --batch "$batch" || true
echo
echo "one result event:"
head -n 1 "$WORK/results.jsonl"
echo
echo "== stats"
bin/enqueue stats --batch "$batch" --counted 10s || true
echo
echo "== results --download $WORK/outputs --batch $batch"
if ! bin/enqueue results --download "$WORK/outputs" --batch "$batch"; then
  echo "demo: results --download failed" >&2; status=1
fi
ls -l "$WORK/outputs"

echo
echo "== dashboard: http://$DASH_ADDR/"
exec 3<>"/dev/tcp/${DASH_ADDR%:*}/${DASH_ADDR##*:}"
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$DASH_ADDR" >&3
if ! grep -q ok <&3; then echo "demo: the dashboard did not answer /healthz; log:" >&2; tail -n 20 "$WORK/dashboard.log" >&2; status=1; fi
exec 3<&-
if [ "${DEMO_DASHBOARD_WAIT:-0}" = 1 ]; then
  echo "open http://$DASH_ADDR/ ; Ctrl-C to stop"
  wait "$dash_pid" || true
fi
exit "$status"
