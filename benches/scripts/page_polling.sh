#!/usr/bin/env bash
# What an open page costs the server. The page polls the view it shows every 2 s (a list's
# first page of 50, or a running execution; the triggers every 10 s), so one open page is at
# most 0.5 requests per second, and a hidden tab or a finished execution none. This measures the server's CPU time per poll: the
# standalone server on SQLite, its deliveries log filled with $DELIVERIES deliveries (each
# started, on one trigger), on one worker thread pinned to CPU 0, answering wrk (CPU 1,
# $CONNECTIONS connections) for $DURATION with each list the page polls: the deliveries' and the
# executions' first page of 50, and the triggers with their counts of the last 24 h, in $ROUNDS
# rounds. Not part of the tests.
#
#   bash benches/scripts/page_polling.sh   # ROUNDS=3 DURATION=5s CONNECTIONS=4 DELIVERIES=2000
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-4}
DELIVERIES=${DELIVERIES:-2000}

source benches/scripts/lib.sh
need_load_tools
cargo build --release --quiet --features server --bin agent-trigger

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$work"
  true
}
trap cleanup EXIT
write_wrk_script "$work/post.lua"
write_server_config "$work/server.toml" polling.db
cat > "$work/get.lua" <<LUA
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $API_KEY"
LUA

TOKIO_WORKER_THREADS=1 taskset -c 0 \
  "$TARGET_DIR/release/agent-trigger" serve --config "$work/server.toml" --listen 127.0.0.1:3211 \
  >/dev/null 2>&1 &
server=$!
base=http://127.0.0.1:3211
await_acceptance server "$base/api/trigger/webhook/$TRIGGER_ID"

# Fill the log: wrk posts until the log holds enough (it is written in batches, just after the
# answers), then no more.
while :; do
  taskset -c 1 wrk -t1 -c4 -d1s -s "$work/post.lua" "$base/api/trigger/webhook/$TRIGGER_ID" >/dev/null
  sleep 0.5
  held=$(curl -s "$base/api/triggers" -H "Authorization: Bearer $API_KEY" |
    python3 -c 'import json, sys; print(sum(sum(t["counts"].values()) for t in json.load(sys.stdin)["triggers"]))')
  [ "$held" -ge "$DELIVERIES" ] && break
done
echo "the log holds $held deliveries"

declare -A cpu rps
for round in $(seq "$ROUNDS"); do
  for view in deliveries executions triggers; do
    url="$base/api/$view"
    [ "$view" = triggers ] || url="$url?limit=50"
    status=$(curl -s -o /dev/null -w '%{http_code}' "$url" -H "Authorization: Bearer $API_KEY")
    [ "$status" = 200 ] || { echo "$url answered $status" >&2; exit 1; }
    before=$(cpu_ticks "$server")
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$work/get.lua" "$url")
    after=$(cpu_ticks "$server")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    micros=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
      'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    cpu[$view]="${cpu[$view]:-} $micros"
    rps[$view]="${rps[$view]:-} $rate"
    echo "round $round: GET ${url#$base}: $rate req/s, $micros µs CPU per request"
  done
done

echo
echo "medians over $ROUNDS rounds of $DURATION (server on CPU 0, wrk on CPU 1):"
for view in deliveries executions triggers; do
  c=$(echo "${cpu[$view]}" | median)
  r=$(echo "${rps[$view]}" | median)
  # The page polls the triggers every 10 s, the other lists every 2 s.
  polls=0.5
  [ "$view" = triggers ] && polls=0.1
  awk -v c="$c" -v r="$r" -v v="$view" -v p="$polls" 'BEGIN {
    printf "  %-10s %6.1f µs CPU per poll; one open page (%.1f polls/s) takes %.3f%% of a core; a core serves %.0f open pages (%.0f req/s)\n",
      v, c, p, c * p / 1e4, 1e6 / (c * p), r }'
done
