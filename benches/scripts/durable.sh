#!/usr/bin/env bash
# The durable path of the main job against the in-memory one, in one run: the standalone server
# on SQLite (a key-authenticated `webhook` trigger, no executor, a fresh database every round,
# its default log level: one line per delivery, to /dev/null here), the same server on
# PostgreSQL (a fresh schema every round; skipped when no server answers at $PG_URL) and
# examples/hyper.rs with the in-memory sink, each on one worker thread pinned to CPU 0, wrk on
# CPU 1, in alternating rounds. For each: requests per second, the server's CPU time per
# acknowledged request (user + system, from /proc; PostgreSQL's own processes are not counted,
# and share the two cores), and wrk's p99 latency; then the ratios, and the ceiling that the
# disk's sync latency puts on SQLite's requests per second. Not part of the tests.
#
#   bash benches/scripts/durable.sh     # ROUNDS=3 DURATION=5s CONNECTIONS="32 256" by default
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
KINDS="sqlite memory"
if command -v psql >/dev/null && psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  KINDS="sqlite postgres memory"
else
  echo "no PostgreSQL answers at $PG_URL: its rounds are skipped"
fi
schema=bench_durable_$$
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32 256}

source benches/scripts/lib.sh
need_load_tools
cargo build --release --quiet --features server --bin agent-trigger --example hyper

work=$(mktemp -d)
script="$work/post.lua"
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$work"
  [[ $KINDS == *postgres* ]] && psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null
  true
}
trap cleanup EXIT
write_wrk_script "$script"
write_server_config "$work/server.toml" durable.db

# Starts one server on CPU 0 and waits until it answers; sets $server.
start() {
  case $1 in
    sqlite)
      rm -f "$work"/durable.db*
      TOKIO_WORKER_THREADS=1 taskset -c 0 \
        "$TARGET_DIR/release/agent-trigger" serve --config "$work/server.toml" --listen 127.0.0.1:3201 \
        >/dev/null 2>&1 &
      ;;
    postgres)
      psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" 2>/dev/null
      AGENT_TRIGGER_DATABASE_URL="$PG_URL?options=-csearch_path%3D$schema" TOKIO_WORKER_THREADS=1 taskset -c 0 \
        "$TARGET_DIR/release/agent-trigger" serve --config "$work/server.toml" --listen 127.0.0.1:3203 \
        >/dev/null 2>&1 &
      ;;
    memory)
      TOKIO_WORKER_THREADS=1 LISTEN_ADDR=127.0.0.1:3202 taskset -c 0 \
        "$TARGET_DIR/release/examples/hyper" >/dev/null 2>&1 &
      ;;
  esac
  server=$!
  await_acceptance "$1" "$(url "$1")"
}

url() {
  case $1 in
    sqlite) echo "http://127.0.0.1:3201/api/trigger/webhook/$TRIGGER_ID" ;;
    postgres) echo "http://127.0.0.1:3203/api/trigger/webhook/$TRIGGER_ID" ;;
    memory) echo "http://127.0.0.1:3202/api/trigger/webhook/$TRIGGER_ID" ;;
  esac
}

declare -A rps cpu p99
for connections in $CONNECTIONS; do
  for round in $(seq "$ROUNDS"); do
    for kind in $KINDS; do
      start "$kind"
      before=$(cpu_ticks "$server")
      out=$(taskset -c 1 wrk -t1 -c"$connections" -d"$DURATION" --latency -s "$script" "$(url "$kind")")
      after=$(cpu_ticks "$server")
      kill "$server"; wait "$server" 2>/dev/null || true; server=
      requests=$(echo "$out" | awk '/requests in/ {print $1}')
      rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      latency=$(echo "$out" | awk '$1 == "99%" {print $2}')
      micros=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
      key="$kind/$connections"
      rps[$key]="${rps[$key]:-} $rate"
      cpu[$key]="${cpu[$key]:-} $micros"
      p99[$key]="${p99[$key]:-} $latency"
      echo "c=$connections round $round: $kind: $rate req/s, $micros µs CPU per request, p99 $latency"
    done
  done
done

# The disk's sync latency where the database lives: 500 writes of 4 KiB over a file that
# exists already, each synced (O_DSYNC), as a WAL that is being reused is written.
dd if=/dev/zero of="$work/sync.probe" bs=4k count=500 status=none
sync_us=$(LC_ALL=C dd if=/dev/zero of="$work/sync.probe" bs=4k count=500 oflag=dsync conv=notrunc 2>&1 |
  awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print int($(i - 1) / 500 * 1e6) }')

echo
echo "medians over $ROUNDS rounds of $DURATION (server on CPU 0, wrk on CPU 1):"
for connections in $CONNECTIONS; do
  s_rps=$(echo "${rps[sqlite/$connections]}" | median)
  m_rps=$(echo "${rps[memory/$connections]}" | median)
  s_cpu=$(echo "${cpu[sqlite/$connections]}" | median)
  m_cpu=$(echo "${cpu[memory/$connections]}" | median)
  printf '  %3d connections: SQLite server %8.0f req/s, %6.1f µs CPU; in-memory example %8.0f req/s, %6.1f µs CPU\n' \
    "$connections" "$s_rps" "$s_cpu" "$m_rps" "$m_cpu"
  echo "       p99 by round: SQLite${p99[sqlite/$connections]}; in-memory${p99[memory/$connections]}"
  awk -v sr="$s_rps" -v mr="$m_rps" -v sc="$s_cpu" -v mc="$m_cpu" 'BEGIN {
    printf "       SQLite / in-memory: %.2fx the requests per second, %.2fx the CPU per request\n", sr / mr, sc / mc }'
  # SQLite commits one group at a time and a group's requests wait for its sync, so when every
  # connection's request is in each group, a round trip of all of them takes the sync plus
  # their CPU on the server's one core.
  awk -v c="$connections" -v f="$sync_us" -v sc="$s_cpu" -v mc="$m_cpu" -v mr="$m_rps" 'BEGIN {
    bound = c / ((f + c * sc) / 1e6); at = c / ((f + c * mc) / 1e6)
    printf "       a sync takes %d µs here: one commit at a time allows at most %.0f req/s at the server'"'"'s CPU (%.2fx the example),\n", f, bound, bound / mr
    printf "       %.0f req/s (%.2fx) were it as cheap as the example\n", at, at / mr }'
  if [[ $KINDS == *postgres* ]]; then
    p_rps=$(echo "${rps[postgres/$connections]}" | median)
    p_cpu=$(echo "${cpu[postgres/$connections]}" | median)
    printf '       PostgreSQL server %8.0f req/s, %6.1f µs CPU (the server alone); p99 by round:%s\n' \
      "$p_rps" "$p_cpu" "${p99[postgres/$connections]}"
    awk -v pr="$p_rps" -v mr="$m_rps" -v pc="$p_cpu" -v mc="$m_cpu" -v sr="$s_rps" 'BEGIN {
      printf "       PostgreSQL / in-memory: %.2fx the requests per second, %.2fx the CPU per request; PostgreSQL / SQLite: %.2fx the requests per second\n", pr / mr, pc / mc, pr / sr }'
  fi
done
