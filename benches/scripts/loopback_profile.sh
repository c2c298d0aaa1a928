#!/usr/bin/env bash
# User-space instructions per request on the loopback, counted by callgrind in each server of
# loopback.sh while wrk loads it: unlike requests per second, these counts barely move when the
# machine is busy, so they show how much work the service adds to bare hyper's. The kernel's
# share (the same syscalls for every server) is not counted, and under valgrind SHA-256 runs in
# software, where natively the CPU's SHA extensions do it. Not part of the tests.
#
#   bash benches/scripts/loopback_profile.sh    # DURATION=10s CONNECTIONS=16 by default
#   callgrind_annotate --inclusive=yes target/profile/loopback-service.out | less
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}

source benches/scripts/lib.sh
need_profile_tools
cargo build --release --quiet --example hyper --example loopback-servers

export TOKIO_WORKER_THREADS=1   # the example on one worker thread, like the other two
WRK_SCRIPT=$(mktemp --suffix=.lua)
trap 'rm -f "$WRK_SCRIPT"' EXIT
write_wrk_script "$WRK_SCRIPT"

# The server's instructions per request, from `callgrind_count NAME PORT SOURCE COMMAND...`.
count() {
  local name=$1 port=$2 source=$3; shift 3
  local requests total
  read -r requests total < <(callgrind_count "loopback-$name" "$port" \
    "/api/trigger/$source/$TRIGGER_ID" "$@")
  echo $((total / requests))
}

bare=$(count bare 3111 jira "$TARGET_DIR/release/examples/loopback-servers" bare 127.0.0.1:3111)
axum=$(count axum 3112 jira "$TARGET_DIR/release/examples/loopback-servers" axum 127.0.0.1:3112)
# The example reads its address from LISTEN_ADDR; its TRIGGER_ID is its `webhook` trigger.
service=$(count service 3113 webhook "$TARGET_DIR/release/examples/hyper")
echo "user-space instructions per request under wrk ($CONNECTIONS connections, $DURATION):"
printf '  %-30s %8d\n' "bare hyper (floor)" "$bare" "axum idiomatic handler" "$axum" "examples/hyper.rs (service)" "$service"
awk -v s="$service" -v b="$bare" -v a="$axum" 'BEGIN {
  printf "  service / bare hyper:  %.2fx the instructions\n", s / b
  printf "  service / axum handler: %.2fx the instructions\n", s / a
}'
