#!/usr/bin/env bash
# User-space instructions per acknowledged request, counted by callgrind, in the standalone
# server on SQLite (the setup of durable.sh: a key-authenticated `webhook` trigger, no executor,
# its default log, a fresh database) and in examples/hyper.rs with the in-memory sink, while wrk
# loads each; then where the server's count goes. Counts repeat where timings
# on a shared machine do not; the kernel's share (the sockets, the WAL's writes and fsyncs)
# is not counted, and under valgrind SHA-256 runs in software. Not part of the tests.
#
#   bash benches/scripts/durable_profile.sh     # DURATION=8s CONNECTIONS=32 by default
#   callgrind_annotate --inclusive=yes target/profile/durable-server.out | less
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-32}

source benches/scripts/lib.sh
need_profile_tools
cargo build --release --quiet --features server --bin agent-trigger --example hyper

export TOKIO_WORKER_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
WRK_SCRIPT="$work/post.lua"
write_wrk_script "$WRK_SCRIPT"
write_server_config "$work/server.toml" "$work/durable.db"

# Instructions per request of the first function (inclusive) whose line holds the text.
share() {
  local out=$1 requests=$2 text=$3
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null |
    awk -v n="$requests" -v t="$text" '
      index($0, t) { gsub(",", "", $1); print int($1 / n); found = 1; exit }
      END { if (!found) print "-" }'
}

read -r example_requests example_total < <(callgrind_count durable-example 3212 \
  "/api/trigger/webhook/$TRIGGER_ID" "$TARGET_DIR/release/examples/hyper")
read -r server_requests server_total < <(callgrind_count durable-server 3211 \
  "/api/trigger/webhook/$TRIGGER_ID" "$TARGET_DIR/release/agent-trigger" serve \
  --config "$work/server.toml" --listen 127.0.0.1:3211)
example="$TARGET_DIR/profile/durable-example.out"
server="$TARGET_DIR/profile/durable-server.out"

printf 'instructions per acknowledged request (%s connections):\n' "$CONNECTIONS"
printf '  in-memory example  %7d\n' $((example_total / example_requests))
printf '  SQLite server      %7d\n' $((server_total / server_requests))
part() { printf '    %-28s %7s\n' "$1" "$(share "$server" "$server_requests" "$2")"; }
part "database thread" 'sqlite::thread::run ['
part "deliveries log thread" 'sqlite::deliveries::run ['
part "the service (pipeline)" 'pipeline::accept::{{closure}} ['
part "the delivery's log line" 'Subscriber>::event ['
part "metrics: the counter lookup" 'Recorder>::register_counter ['
part "log writer thread" 'tracing_appender::worker::Worker<T>::work ['
