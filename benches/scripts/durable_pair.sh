#!/usr/bin/env bash
# Two builds of the standalone server on SQLite against each other, in alternating rounds (the
# setup of durable.sh: a key-authenticated `webhook` trigger, no executor, the default log, a
# fresh database every round, one worker thread, the server on SERVER_CPUS and wrk on
# WRK_CPUS): for each round, requests per second, the server's CPU time per acknowledged
# request and the acknowledgement's latency (p50 and p99, as wrk measures it); then the medians
# and in how many pairs the second build used less CPU. With few connections (CONNECTIONS=1)
# the server is not saturated, and the latency is what a sender waits for its
# acknowledgement. Timings on a shared machine drift by tens of percent within minutes, so a
# change is judged by pairs run together, not by runs made apart. Not part of the tests.
#
#   bash benches/scripts/durable_pair.sh REV          # REV's build (first), the working tree's
#   bash benches/scripts/durable_pair.sh BIN_A BIN_B  # two agent-trigger binaries already built
#   ROUNDS=4 DURATION=5s CONNECTIONS=256 SERVER_CPUS=0 WRK_CPUS=1 by default; SERVER_CPUS=0,1
#   lets the server's other threads (the deliveries log's) take the second core
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-256}
SERVER_CPUS=${SERVER_CPUS:-0}
WRK_CPUS=${WRK_CPUS:-1}

source benches/scripts/lib.sh
need_load_tools

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  git worktree remove --force "$work/revision" 2>/dev/null
  rm -rf "$work"
  true
}
trap cleanup EXIT

case $# in
  1)
    # The revision builds in a worktree of its own, into a target directory kept between runs.
    git worktree add --quiet --detach "$work/revision" "$1"
    cargo build --release --quiet --features server --bin agent-trigger \
      --manifest-path "$work/revision/Cargo.toml" --target-dir "$TARGET_DIR/pair"
    cp "$TARGET_DIR/pair/release/agent-trigger" "$work/first"
    cargo build --release --quiet --features server --bin agent-trigger
    first="$work/first" second="$TARGET_DIR/release/agent-trigger"
    names=("$1" "working tree")
    ;;
  2)
    first=$1 second=$2
    names=("$1" "$2")
    ;;
  *)
    echo "usage: $0 REV | $0 BIN_A BIN_B" >&2
    exit 2
    ;;
esac

write_wrk_script "$work/post.lua"
write_server_config "$work/server.toml" "$work/durable.db"
url="http://127.0.0.1:3204/api/trigger/webhook/$TRIGGER_ID"

# One round of one binary; sets $rate (requests per second) and $cpu (µs of CPU per request).
round() {
  rm -f "$work"/durable.db*
  TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPUS" "$1" serve --config "$work/server.toml" \
    --listen 127.0.0.1:3204 >/dev/null 2>&1 &
  server=$!
  await_acceptance "$1" "$url"
  local before after out
  before=$(cpu_ticks "$server")
  out=$(taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url")
  after=$(cpu_ticks "$server")
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  read -r rate cpu p50 p99 < <(echo "$out" | awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    # wrk prints latencies as 812.00us, 1.52ms or 1.01s: in ms.
    function ms(text) {
      if (text ~ /us$/) return text / 1000
      if (text ~ /ms$/) return text + 0
      if (text ~ /s$/) return text * 1000
      return text
    }
    /requests in/ { n = $1 } /Requests\/sec/ { rate = $2 }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    END { printf "%.0f %.1f %.2f %.2f\n", rate, t / hz * 1e6 / n, p50, p99 }')
}

rates=("" "") cpus=("" "") p50s=("" "") p99s=("" "") fewer=0
for r in $(seq "$ROUNDS"); do
  round "$first"; rate_a=$rate cpu_a=$cpu p50_a=$p50 p99_a=$p99
  round "$second"; rate_b=$rate cpu_b=$cpu p50_b=$p50 p99_b=$p99
  rates[0]+=" $rate_a" cpus[0]+=" $cpu_a" p50s[0]+=" $p50_a" p99s[0]+=" $p99_a"
  rates[1]+=" $rate_b" cpus[1]+=" $cpu_b" p50s[1]+=" $p50_b" p99s[1]+=" $p99_b"
  awk -v a="$cpu_a" -v b="$cpu_b" 'BEGIN { exit !(b < a) }' && fewer=$((fewer + 1))
  echo "pair $r: $rate_a req/s, $cpu_a µs, p50/p99 $p50_a/$p99_a ms | $rate_b req/s, $cpu_b µs, p50/p99 $p50_b/$p99_b ms"
done

echo
echo "$CONNECTIONS connections, $ROUNDS pairs of $DURATION (server on CPU $SERVER_CPUS, wrk on CPU $WRK_CPUS), medians:"
for i in 0 1; do
  printf '  %-40s %8.0f req/s, %6.1f µs CPU per request, latency p50 %6.2f ms, p99 %6.2f ms\n' \
    "${names[$i]}" "$(echo "${rates[$i]}" | median)" "$(echo "${cpus[$i]}" | median)" \
    "$(echo "${p50s[$i]}" | median)" "$(echo "${p99s[$i]}" | median)"
done
echo "  the second used less CPU in $fewer of $ROUNDS pairs"
