#!/usr/bin/env bash
# User-space instructions per request on the loopback, counted by callgrind in each server of
# benches/loopback.sh while wrk loads it: unlike requests per second, these counts barely move
# when the machine is busy, so they show how much work the service adds to bare hyper's. The
# kernel's share (the same syscalls for every server) is not counted, and under valgrind
# SHA-256 runs in software (about 3 500 of the service's count; natively the CPU's SHA
# extensions do it in a few hundred). Not part of the tests.
#
#   bash benches/loopback_profile.sh      # DURATION=10s CONNECTIONS=16 by default
#   callgrind_annotate --inclusive=yes target/profile/loopback-service.out | less
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
cargo build --release --quiet --example hyper --example loopback-servers
mkdir -p target/profile

source benches/loopback/load.sh
export TOKIO_WORKER_THREADS=1   # the example on one worker thread, like the other two
script=$(mktemp --suffix=.lua)
trap 'rm -f "$script"' EXIT
write_wrk_script "$script"

# Prints the server's instructions per request: counting is zeroed after a warm-up load,
# and the count dumped after a measured one, so start-up and warm-up drop out. It runs in a
# command substitution's subshell, which stops its own server however it ends.
count() {
  local name=$1 port=$2 source=$3; shift 3
  server=
  trap '[ -n "$server" ] && kill "$server" 2>/dev/null' EXIT
  local out="target/profile/loopback-$name.out"
  rm -f "$out" "$out".*
  LISTEN_ADDR="127.0.0.1:$port" valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
    >/dev/null 2>&1 &
  server=$!
  local url="http://127.0.0.1:$port/api/trigger/$source/$TRIGGER_ID"
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST "$url" && break
    sleep 0.2
  done
  wrk -t1 -c"$CONNECTIONS" -d3s -s "$script" "$url" >/dev/null
  callgrind_control -z "$server" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$script" "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$server" >/dev/null 2>&1
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
  local dump
  dump=$(ls -t "$out".* | head -1)
  mv "$dump" "$out"
  rm -f "$out".*
  local total
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo $((total / requests))
}

bare=$(count bare 3111 jira ./target/release/examples/loopback-servers bare 127.0.0.1:3111)
axum=$(count axum 3112 jira ./target/release/examples/loopback-servers axum 127.0.0.1:3112)
# The example reads its address from LISTEN_ADDR; its TRIGGER_ID is its `webhook` trigger.
service=$(count service 3113 webhook ./target/release/examples/hyper)
echo "user-space instructions per request under wrk ($CONNECTIONS connections, $DURATION):"
printf '  %-30s %8d\n' "bare hyper (floor)" "$bare" "axum idiomatic handler" "$axum" "examples/hyper.rs (service)" "$service"
awk -v s="$service" -v b="$bare" -v a="$axum" 'BEGIN {
  printf "  service / bare hyper:  %.2fx the instructions\n", s / b
  printf "  service / axum handler: %.2fx the instructions\n", s / a
}'
