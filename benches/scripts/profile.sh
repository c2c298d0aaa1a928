#!/usr/bin/env bash
# Instructions per accepted request inside the service, and in the JSON scan alone, counted by
# callgrind: unlike times, these counts repeat exactly for the same build, however busy the
# machine is, so they show whether a change to the hot path made it do less. Not a timing: the
# SHA-256 of the bearer token runs in software under valgrind, where natively it uses the CPU's
# SHA extensions. Last, the scan's instructions per byte of the 1 MiB document that
# `benches/pipeline.rs` validates, and of the same document pretty-printed; and sonic-rs
# validating the same bodies, for comparison.
#
#   bash benches/scripts/profile.sh     # N=5000 requests by default, LARGE=5 of the 1 MiB
#   callgrind_annotate --inclusive=yes target/profile/service.out | less   # where they go
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-5000}
LARGE=${LARGE:-5}
source benches/scripts/lib.sh
install_missing valgrind valgrind
binary=$(bench_binary allocations)
mkdir -p "$TARGET_DIR/profile"

# The bench sends requests of its own (warm-up, the allocation count) before the rounds of
# PROFILE_LOOP, PROFILE_LARGE or PROFILE_PRETTY, so each count is a run with them less a base
# run without them, made once for each part of the code that is counted: the difference is the
# rounds' worth.
base() {
  local out=$1; shift
  PROFILE_LOOP=0 PROFILE_LARGE=0 PROFILE_PRETTY=0 PROFILE_SONIC=0 PROFILE_SONIC_LARGE=0 \
    valgrind --tool=callgrind \
    --callgrind-out-file="$TARGET_DIR/profile/$out-base.out" "$@" "$binary" >/dev/null 2>&1
  callgrind_total "$TARGET_DIR/profile/$out-base.out"
}
count() {
  local out=$1 base=$2 loop=$3 rounds=$4; shift 4
  env "$loop=$rounds" valgrind --tool=callgrind --callgrind-out-file="$TARGET_DIR/profile/$out.out" \
    "$@" "$binary" >"$TARGET_DIR/profile/$out.txt" 2>&1
  echo $(( ($(callgrind_total "$TARGET_DIR/profile/$out.out") - base) / rounds ))
}
in_service="--toggle-collect=*tower::util::oneshot::Oneshot<S,Req> as core::future::future::Future>::poll"
in_scan="--toggle-collect=agent_trigger::json::scan"
service_base=$(base service "$in_service")
scan_base=$(base scan "$in_scan")
service=$(count service "$service_base" PROFILE_LOOP "$N" "$in_service")
scan=$(count scan "$scan_base" PROFILE_LOOP "$N" "$in_scan")
echo "instructions per accepted request: $service in the service, $scan of them in the JSON scan"
large=$(count large "$scan_base" PROFILE_LARGE "$LARGE" "$in_scan")
awk -v total="$large" 'BEGIN { printf "JSON scan of the 1 MiB document: %.2f instructions per byte\n", total / 1048576 }'
pretty=$(count pretty "$scan_base" PROFILE_PRETTY "$LARGE" "$in_scan")
size=$(awk '/pretty-printed document/ {print $3}' "$TARGET_DIR/profile/pretty.txt")
awk -v total="$pretty" -v size="$size" 'BEGIN {
  printf "JSON scan of the same document pretty-printed (%d bytes): %.2f instructions per byte\n", size, total / size }'
# sonic-rs validating the same bodies (serde's IgnoredAny), for comparison: the whole run's
# count, less a base run's.
whole_base=$(base whole)
sonic=$(count sonic "$whole_base" PROFILE_SONIC "$N")
sonic_large=$(count sonic-large "$whole_base" PROFILE_SONIC_LARGE "$LARGE")
echo "sonic-rs validating the Jira body: $sonic instructions"
awk -v total="$sonic_large" 'BEGIN { printf "sonic-rs validating the 1 MiB document: %.2f instructions per byte\n", total / 1048576 }'
