#!/usr/bin/env bash
# Every fuzz target (or those named) for MINUTES minutes each, one after the other, from its
# seed corpus (fuzz/seeds/TARGET, in git) into its working corpus (fuzz/corpus/TARGET, ignored
# by git and kept between runs, so each run goes on from the last). For each target: the
# working corpus's size before and after, the inputs executed, and whether it crashed (the
# crashing input is left in fuzz/artifacts/TARGET). Ends non-zero when any target crashed.
#
#   bash benches/scripts/fuzz_all.sh                        # MINUTES=5 per target by default
#   MINUTES=60 bash benches/scripts/fuzz_all.sh service json_body
#
# The seeds stay few (at most a thousand in all): an input worth keeping in git, such as a fixed
# crash's, is copied into fuzz/seeds/TARGET by hand; the working corpus is what grows.
set -euo pipefail
cd "$(dirname "$0")/../.."

MINUTES=${MINUTES:-5}
seconds=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')

source benches/scripts/lib.sh
need_cargo_fuzz
cd fuzz
# Sanitizer builds on nightly go to fuzz/target, never into a target directory stable builds share.
unset CARGO_TARGET_DIR
cargo +nightly fuzz build
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

count() { find "$1" -type f 2>/dev/null | wc -l; }
crashed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  before=$(count "corpus/$target")
  log=$(mktemp)
  status=ok
  # The first directory is the one new inputs are written to; the seeds are only read.
  # A target may have no seeds yet (its inputs then start from nothing).
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  if ! cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    status=CRASHED
    crashed+=("$target")
    tail -n 40 "$log"
  fi
  after=$(count "corpus/$target")
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rm -f "$log"
  line=$(printf '%-16s %-8s seeds %5d, corpus %6d -> %6d (+%d), %s inputs run' "$target" \
    "$status" "$(count "seeds/$target")" "$before" "$after" $((after - before)) "${runs:-?}")
  echo "$line"
  summary+=("$line")
done

echo
echo "$MINUTES min per target:"
printf '  %s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "crashed: ${crashed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
