#!/usr/bin/env bash
# Time to agent: from a webhook's send (on loopback) to its command's first act, for the
# standalone server on SQLite, on PostgreSQL with one instance and with two (the load split
# between them), at each rate in RATES; and the floor: the same command spawned from a warm
# tokio runtime at the same rate. The command is examples' `time-to-agent probe`, a compiled
# program whose first act is to append its execution id and the time to a file. Prints, per
# case, p50/p99/max in ms and the ratio and difference of p99 to the floor's; then the start
# throughput (a burst of BURST deliveries: executions started per second) against the floor's
# spawns per second; and draws the histogram of each case at the first rate into
# $OUT/time_to_agent.png (with Python's matplotlib, installed with pip when missing). Not part
# of the tests.
#
#   bash benches/scripts/time_to_agent.sh     # RATES="20 300" SECONDS_EACH=10 BURST=2000 WORKERS=32
#   SERVER=path/to/agent-trigger bash benches/scripts/time_to_agent.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES=${RATES:-20 300}
SECONDS_EACH=${SECONDS_EACH:-10}
BURST=${BURST:-2000}
WORKERS=${WORKERS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
OUT=${OUT:-target/time_to_agent}

source benches/scripts/lib.sh
cargo build --release --quiet --features server --bins --example time-to-agent
# SERVER=path measures another build of the server (an earlier revision's, say), with the
# launcher, agent-trigger-exec, beside it where that build has one.
server_bin=${SERVER:-"$PWD/$TARGET_DIR/release/agent-trigger"}
probe="$PWD/$TARGET_DIR/release/examples/time-to-agent"

KINDS="sqlite"
if command -v psql >/dev/null && psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  KINDS="sqlite postgres postgres×2"
else
  echo "no PostgreSQL answers at $PG_URL: its cases are skipped"
fi
schema=bench_time_to_agent_$$

mkdir -p "$OUT"
work=$(mktemp -d)
# The command may run as another account (the server refuses to run commands as root), which
# must be able to append to the starts file.
chmod 0755 "$work"
mkdir -m 1777 "$work/starts"
servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  [[ $KINDS == *postgres* ]] && psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null
  true
}
trap cleanup EXIT

# `config FILE DATABASE STARTS`: one key, one trigger, an executor running the probe.
config() {
  write_server_config "$1" "$2"
  cat >> "$1" <<TOML

[executor]
command = ["$probe", "probe", "$3"]
workers = $WORKERS
TOML
  [ "$(id -u)" = 0 ] && echo 'user = "nobody"' >> "$1"
  true
}

# `start KIND STARTS`: the server(s) of KIND, fresh, each waited for; sets $urls.
start() {
  local kind=$1 starts=$2 database port instances=1
  urls=()
  case $kind in
    sqlite) rm -f "$work"/tta.db*; database="$work/tta.db" ;;
    postgres*)
      psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" 2>/dev/null
      database="$PG_URL?options=-csearch_path%3D$schema"
      [ "$kind" = "postgres×2" ] && instances=2
      ;;
  esac
  config "$work/server.toml" "$database" "$starts"
  for instance in $(seq "$instances"); do
    port=$((3300 + instance))
    "$server_bin" serve --config "$work/server.toml" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
    servers+=($!)
    await_acceptance "$kind" "http://127.0.0.1:$port/api/trigger/webhook/$TRIGGER_ID"
    urls+=("http://127.0.0.1:$port/api/trigger/webhook/$TRIGGER_ID")
  done
  # The acceptance probe's executions run before the measured load starts.
  sleep 1
}

stop() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
  servers=()
}

# `measure KIND RATE SECONDS`: "p50 p99 max starts/s cpu" of KIND at RATE for SECONDS, cpu
# being the server's CPU time per execution in ms (its start included; "-" for the floor); the
# waits go to $OUT/KIND-RATE.waits.
measure() {
  local kind=$1 rate=$2 seconds=$3 name=$1-$2 starts sent cpu=-
  starts="$work/starts/$name"
  sent="$work/$name.sent"
  : > "$starts"
  chmod 0666 "$starts"
  if [ "$kind" = floor ]; then
    "$probe" floor "$probe" "$starts" "$rate" "$seconds" "$sent"
  else
    start "$kind" "$starts"
    local share pids=() index=0
    share=$(awk -v r="$rate" -v n="${#urls[@]}" 'BEGIN { print r / n }')
    for url in "${urls[@]}"; do
      "$probe" load "$url" "$share" "$seconds" "$sent.$index" &
      pids+=($!)
      index=$((index + 1))
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    cat "$sent".* > "$sent"
    # Every execution acknowledged has started, or a second has passed since the last did.
    local expected previous=-1
    expected=$(wc -l < "$sent")
    while [ "$(wc -l < "$starts")" -lt "$expected" ] && [ "$(wc -l < "$starts")" != "$previous" ]; do
      previous=$(wc -l < "$starts")
      sleep 1
    done
    local ticks=0
    for pid in "${servers[@]}"; do
      ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$(wc -l < "$starts")" \
      'BEGIN { printf "%.2f", t * 1000 / hz / n }')
    stop
  fi
  "$probe" report "$sent" "$starts" "$OUT/$name.waits" | awk -v cpu="$cpu" '{ print $3, $4, $5, $6, cpu }'
}

printf '\n%-12s %6s %9s %9s %9s %12s %12s\n' case rate "p50 ms" "p99 ms" "max ms" "p99/floor" "p99-floor"
for rate in $RATES; do
  read -r p50 floor_p99 max _ < <(measure floor "$rate" "$SECONDS_EACH")
  printf '%-12s %6s %9s %9s %9s %12s %12s\n' floor "$rate" "$p50" "$floor_p99" "$max" 1.00 +0.00
  for kind in $KINDS; do
    read -r p50 p99 max _ < <(measure "$kind" "$rate" "$SECONDS_EACH")
    printf '%-12s %6s %9s %9s %9s %12s %12s\n' "$kind" "$rate" "$p50" "$p99" "$max" \
      "$(awk -v a="$p99" -v b="$floor_p99" 'BEGIN { printf "%.2f", a / b }')" \
      "$(awk -v a="$p99" -v b="$floor_p99" 'BEGIN { printf "%+.2f", a - b }')"
  done
done

# Start throughput: BURST deliveries as fast as the load sends them (a rate no server keeps
# up with), executions started per second from the first start to the last.
printf '\n%-12s %14s %8s %18s\n' case "starts per s" "vs floor" "server CPU ms/exec"
burst_rate=5000
burst_seconds=$(awk -v b="$BURST" -v r="$burst_rate" 'BEGIN { print b / r }')
read -r _ _ _ floor_rate _ < <(measure floor "$burst_rate" "$burst_seconds")
printf '%-12s %14s %8s %18s\n' floor "$floor_rate" 1.00 -
for kind in $KINDS; do
  read -r _ _ _ rate cpu < <(measure "$kind" "$burst_rate" "$burst_seconds")
  printf '%-12s %14s %8s %18s\n' "$kind" "$rate" \
    "$(awk -v a="$rate" -v b="$floor_rate" 'BEGIN { printf "%.2f", a / b }')" "$cpu"
done

first_rate=${RATES%% *}
python3 -c 'import matplotlib' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check matplotlib
python3 - "$OUT" "$first_rate" floor $KINDS <<'PY'
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out, rate, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
figure, axes = plt.subplots(figsize=(8, 3.6))
for kind in kinds:
    with open(f"{out}/{kind}-{rate}.waits") as lines:
        waits = [float(line) for line in lines if line.strip()]
    axes.hist(waits, bins=50, histtype="step", linewidth=1.5, label=kind)
axes.set_xlabel("time to agent (ms)")
axes.set_ylabel("executions")
axes.set_title(f"time to agent at {rate}/s")
axes.legend()
figure.tight_layout()
figure.savefig(f"{out}/time_to_agent.png", dpi=100)
PY
echo "histogram: $OUT/time_to_agent.png"
