#!/usr/bin/env bash
# User-space instructions per acknowledged request, counted by callgrind, in the standalone
# server on SQLite (the setup of benches/durable.sh: a key-authenticated `webhook` trigger, no
# executor, its default log, a fresh database) and in examples/hyper.rs with the in-memory
# sink, while wrk loads each; then where the server's count goes. Counts repeat where timings
# on a shared machine do not; the kernel's share (the sockets, the WAL's writes and fsyncs)
# is not counted, and under valgrind SHA-256 runs in software. Not part of the tests.
#
#   bash benches/durable_profile.sh       # DURATION=8s CONNECTIONS=32 by default
#   callgrind_annotate --inclusive=yes target/profile/durable-server.out | less
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-32}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
cargo build --release --quiet --features server --bin agent-trigger --example hyper
mkdir -p target/profile

source benches/loopback/load.sh
export TOKIO_WORKER_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
write_wrk_script "$work/post.lua"
cat > "$work/server.toml" <<TOML
database = "$work/durable.db"

[[keys]]
id = "bench"
tenant = "bench"
env = "API_KEY"

[[triggers]]
id = "$TRIGGER_ID"
tenant = "bench"
source = "webhook"
TOML

# Counts one server under load: the count is zeroed after a warm-up and dumped after the
# measured run, so start-up drops out. Prints the requests wrk completed meanwhile. It runs
# in a command substitution's subshell, which stops its own server however it ends.
count() {
  local name=$1 port=$2; shift 2
  server=
  trap '[ -n "$server" ] && kill "$server" 2>/dev/null' EXIT
  local out="target/profile/durable-$name.out"
  rm -f "$out" "$out".*
  LISTEN_ADDR="127.0.0.1:$port" valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
    >/dev/null 2>&1 &
  server=$!
  local url="http://127.0.0.1:$port/api/trigger/webhook/$TRIGGER_ID"
  for _ in $(seq 150); do
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url" \
      -H 'Content-Type: application/json' -H "Authorization: Bearer $API_KEY" -d "$BODY" || true)
    [ "$status" = 200 ] && break
    sleep 0.2
  done
  wrk -t1 -c"$CONNECTIONS" -d3s -s "$work/post.lua" "$url" >/dev/null
  callgrind_control -z "$server" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$work/post.lua" "$url" |
    awk '/requests in/ {print $1}')
  callgrind_control -d "$server" >/dev/null 2>&1
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
  local dump
  dump=$(ls -t "$out".* | head -1)
  mv "$dump" "$out"
  rm -f "$out".*
  echo "$requests"
}

# Instructions per request of the first function (inclusive) whose line holds the text.
share() {
  local out=$1 requests=$2 text=$3
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null |
    awk -v n="$requests" -v t="$text" 'index($0, t) { gsub(",", "", $1); print int($1 / n); exit }'
}

total() { share "$1" "$2" "PROGRAM TOTALS"; }

example_requests=$(count example 3212 ./target/release/examples/hyper)
server_requests=$(count server 3211 ./target/release/agent-trigger serve \
  --config "$work/server.toml" --listen 127.0.0.1:3211)
example=target/profile/durable-example.out
server=target/profile/durable-server.out

printf 'instructions per acknowledged request (%s connections):\n' "$CONNECTIONS"
printf '  in-memory example  %7d\n' "$(total $example "$example_requests")"
printf '  SQLite server      %7d\n' "$(total $server "$server_requests")"
printf '    database thread            %7d\n' \
  "$(share $server "$server_requests" 'sqlite::thread::run [')"
printf '    the service (pipeline)     %7d\n' \
  "$(share $server "$server_requests" 'pipeline::accept::{{closure}} [')"
printf '    the delivery'"'"'s log line   %7d\n' \
  "$(share $server "$server_requests" 'Subscriber>::event [')"
printf '    metrics: the counter lookup %6d\n' \
  "$(share $server "$server_requests" 'Recorder>::register_counter [')"
printf '    log writer thread          %7d\n' \
  "$(share $server "$server_requests" 'tracing_appender::worker::Worker<T>::work [')"
