#!/usr/bin/env bash
# Instructions per accepted request inside the service for each case of `benches/rules.rs`
# (no rules; a filter; a prompt; filter + input + prompt, on the ~2.7 KB Jira-like body; one
# field read and the whole body read, on the 16 KiB document), counted by callgrind: the counts
# repeat exactly for one build, however busy the machine. Only the service is counted, and each
# figure is a run of N requests less a run of 10, so that what the first requests set up once
# (lazy tables, the rules' first evaluation) is left out. Then whole requests through the
# standalone server, with and without the rules (its section below says how).
#
#   bash benches/scripts/rules_profile.sh           # N=2000 by default
#   callgrind_annotate --inclusive=yes target/profile/rules-filter.out | less   # where they go
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-2000}
source benches/scripts/lib.sh
install_missing valgrind valgrind
binary=$(bench_binary rules)
mkdir -p "$TARGET_DIR/profile"

in_service="--toggle-collect=*tower::util::oneshot::Oneshot<S,Req> as core::future::future::Future>::poll"
count() {
  local case=$1 rounds=$2 out="$TARGET_DIR/profile/rules-$1"
  [ "$rounds" = 10 ] && out="$out-base"
  PROFILE_RULES=$case PROFILE_ROUNDS=$rounds valgrind --tool=callgrind "$in_service" \
    --callgrind-out-file="$out.out" "$binary" >/dev/null 2>&1
  callgrind_total "$out.out"
}
plain=0
for case in plain filter prompt filter_input_prompt document_plain document_checked document_values; do
  base=$(count "$case" 10)
  per=$(( ($(count "$case" "$N") - base) / (N - 10) ))
  case $case in plain | document_plain) plain=$per ;; esac
  awk -v name="$case" -v per="$per" -v plain="$plain" 'BEGIN {
    printf "%-20s %9d instructions per request (%.2fx its plain)\n", name, per, per / plain }'
done

# Whole requests through the standalone server on SQLite (durable_profile.sh's setup: HTTP, the
# key check and the store counted too, the kernel not), posting the Jira-like body to a `jira`
# trigger without rules, with the three rules (accepted, stored), and with a filter the body
# does not match (answered as skipped: nothing stored, nothing started).
need_profile_tools
cargo build --release --quiet --features server --bin agent-trigger
export TOKIO_WORKER_THREADS=1 DURATION=${DURATION:-8s} CONNECTIONS=${CONNECTIONS:-32}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PROFILE_RULES=server_trigger "$binary" > "$work/trigger"
BODY=$(tail -n 1 "$work/trigger")
WRK_SCRIPT="$work/post.lua"
write_wrk_script "$WRK_SCRIPT"
plain=0
for case in none rules filtered_out; do
  write_server_config "$work/$case.toml" "$work/$case.db"
  sed -i 's/^source = "webhook"$/source = "jira"/' "$work/$case.toml"
  case $case in
    rules) head -n -1 "$work/trigger" >> "$work/$case.toml" ;;
    filtered_out) echo "filter = 'action == \"jira:issue_deleted\"'" >> "$work/$case.toml" ;;
  esac
  read -r requests total < <(callgrind_count "rules-server-$case" 3213 \
    "/api/trigger/jira/$TRIGGER_ID" "$TARGET_DIR/release/agent-trigger" serve \
    --config "$work/$case.toml" --listen 127.0.0.1:3213)
  per=$((total / requests))
  [ "$case" = none ] && plain=$per
  awk -v name="server, $case" -v per="$per" -v plain="$plain" 'BEGIN {
    printf "%-20s %9d instructions per request (%.2fx without rules)\n", name, per, per / plain }'
done
rm -rf "$work"
