#!/usr/bin/env bash
# The soak: hours of mixed traffic against one standalone server on SQLite and two on one
# PostgreSQL schema, with every server's resident memory, open file descriptors, database size
# and p99 latency recorded every 10 s. The load (examples `soak`, benches/soak.rs) mixes new
# deliveries, redeliveries, invalid bodies and keys, slow clients, cancels, replays and lists,
# and reloads each server (SIGHUP) every minute; executions run a command that takes up to a
# second. Writes soak.csv and soak.png (benches/scripts/soak_plot.py, matplotlib) into OUT and
# prints the table of the first sample after warm-up against the last. Not part of the tests.
#
#   bash benches/scripts/soak.sh                     # 60 minutes, release build
#   MINUTES=30 RATE=20 PROFILE=dev OUT=soak-out bash benches/scripts/soak.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/test by default; without an answer, SQLite only
set -euo pipefail
cd "$(dirname "$0")/../.."

MINUTES=${MINUTES:-60}
RATE=${RATE:-20}
SAMPLE_SECS=${SAMPLE_SECS:-10}
PROFILE=${PROFILE:-release}
OUT=${OUT:-soak-out}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}

source benches/scripts/lib.sh
command -v python3 >/dev/null || { echo "python3 is needed for the plot" >&2; exit 1; }
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib

cargo build --quiet --profile "$PROFILE" --features "${FEATURES:-server}" --bin agent-trigger --example soak
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
server_bin="$TARGET_DIR/$dir/agent-trigger"
load_bin="$TARGET_DIR/$dir/examples/soak"

mkdir -p "$OUT"
work=$(mktemp -d)
schema="soak_$(date +%s)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${pg:-}" ] && psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
  rm -rf "$work"
  true
}
trap cleanup EXIT

# The agent: reads its input, then takes up to a second (so that some cancels find it running).
cat > "$work/agent.sh" <<'AGENT'
#!/bin/sh
cat > /dev/null
sleep "0.$(( $$ % 10 ))"
AGENT
chmod 755 "$work/agent.sh"

write_server_config "$work/server.toml" "$work/soak.db"
{
  echo
  echo "[executor]"
  echo "command = [\"$work/agent.sh\"]"
  echo "workers = 4"
  # A root server must name the account its commands run as.
  [ "$(id -u)" = 0 ] && echo 'user = "root"'
} >> "$work/server.toml"

start() { # NAME PORT [DATABASE_URL]
  local log="$OUT/$1.log"
  if [ -n "${3:-}" ]; then
    AGENT_TRIGGER_DATABASE_URL=$3 "$server_bin" serve --config "$work/server.toml" \
      --listen "127.0.0.1:$2" >"$log" 2>&1 &
  else
    "$server_bin" serve --config "$work/server.toml" --listen "127.0.0.1:$2" >"$log" 2>&1 &
  fi
  pids+=($!)
  await_acceptance "$1" "http://127.0.0.1:$2/api/trigger/webhook/$TRIGGER_ID"
}

start sqlite 3311
targets="sqlite=http://127.0.0.1:3311=${pids[0]}=$work/soak.db"
pg=
if psql -q "$PG_URL" -c "CREATE SCHEMA $schema" >/dev/null 2>&1; then
  pg=1
  url="$PG_URL?options=-csearch_path%3D$schema"
  start pg-a 3312 "$url"
  start pg-b 3313 "$url"
  targets+=",pg-a=http://127.0.0.1:3312=${pids[1]}=pg:$schema"
  targets+=",pg-b=http://127.0.0.1:3313=${pids[2]}=pg:$schema"
  export SOAK_PG_URL=$PG_URL
else
  echo "no PostgreSQL at $PG_URL: SQLite only" >&2
fi

SOAK_TARGETS=$targets SOAK_MINUTES=$MINUTES SOAK_RATE=$RATE SOAK_SAMPLE_SECS=$SAMPLE_SECS \
  SOAK_CSV="$OUT/soak.csv" "$load_bin" >/dev/null
python3 benches/scripts/soak_plot.py "$OUT/soak.csv" "$OUT/soak.png"
