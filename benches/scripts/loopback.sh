#!/usr/bin/env bash
# Loopback load comparison, in one run: bare hyper answering a fixed {"executionId":…} (the
# floor of this stack), the idiomatic axum handler, and examples/hyper.rs (the service behind
# TriggerLayer). Each server runs one worker thread pinned to CPU 0; wrk runs on CPU 1. Rounds
# alternate between the servers; the medians and ratios are printed. Not part of the tests.
#
#   bash benches/scripts/loopback.sh    # ROUNDS=5 DURATION=5s CONNECTIONS=32 by default
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}

source benches/scripts/lib.sh
need_load_tools
cargo build --release --quiet --example hyper --example loopback-servers

script=$(mktemp --suffix=.lua)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -f "$script"; }
trap cleanup EXIT
write_wrk_script "$script"

taskset -c 0 "$TARGET_DIR/release/examples/loopback-servers" bare 127.0.0.1:3101 >/dev/null & pids+=($!)
taskset -c 0 "$TARGET_DIR/release/examples/loopback-servers" axum 127.0.0.1:3102 >/dev/null & pids+=($!)
# One worker thread, like the other two servers.
TOKIO_WORKER_THREADS=1 LISTEN_ADDR=127.0.0.1:3103 taskset -c 0 "$TARGET_DIR/release/examples/hyper" >/dev/null & pids+=($!)
sleep 1

declare -A names=([3101]="bare hyper (floor)" [3102]="axum idiomatic handler" [3103]="examples/hyper.rs (service)")
declare -A results
for round in $(seq "$ROUNDS"); do
  for port in 3101 3102 3103; do
    # The example's TRIGGER_ID is its `webhook` trigger; the axum handler's is a Jira one.
    source=jira; [ "$port" = 3103 ] && source=webhook
    url="http://127.0.0.1:$port/api/trigger/$source/$TRIGGER_ID"
    # Check the server answers as it should before loading it.
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url" -H 'Content-Type: application/json' -H "Authorization: Bearer $API_KEY" -d "$BODY")
    [ "$status" = 200 ] || { echo "${names[$port]} answered $status" >&2; exit 1; }
    rps=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$script" "$url" | awk '/Requests\/sec/ {print $2}')
    results[$port]="${results[$port]:-} $rps"
    echo "round $round: ${names[$port]}: $rps req/s"
  done
done

bare=$(echo "${results[3101]}" | median)
axum=$(echo "${results[3102]}" | median)
service=$(echo "${results[3103]}" | median)
echo
echo "median requests/s over $ROUNDS rounds of $DURATION, $CONNECTIONS connections:"
printf '  %-30s %10.0f\n' "bare hyper (floor)" "$bare" "axum idiomatic handler" "$axum" "examples/hyper.rs (service)" "$service"
awk -v s="$service" -v b="$bare" -v a="$axum" 'BEGIN {
  printf "  service / bare hyper:  %.2fx\n", s / b
  printf "  service / axum handler: %.2fx\n", s / a
}'
# The machine's speed drifts between rounds; the ratio within each round shows how far, and
# its median is the comparison least moved by that drift.
ratios=$(paste <(echo "${results[3103]}" | tr ' ' '\n' | grep -v '^$') <(echo "${results[3101]}" | tr ' ' '\n' | grep -v '^$') |
  awk '{ printf "%.4f\n", $1 / $2 }' | sort -g)
printf '  service / bare hyper within one round: %.2fx to %.2fx, median %.2fx\n' \
  "$(echo "$ratios" | head -1)" "$(echo "$ratios" | tail -1)" "$(echo "$ratios" | tr '\n' ' ' | median)"
