#!/usr/bin/env bash
# One agent per subject, measured through the standalone server. Not part of the tests.
#
# (a) Debounce: how late a debounced execution's command starts after its quiet period ends
#     (its `createdAt` plus `debounce_secs`, as the API shows it, to the command's own clock
#     reading at start), p50/p99/max over ROUNDS deliveries with keys of their own, sent
#     SPACING_MS apart so that their debounces overlap; on SQLite and on PostgreSQL.
# (b) Contention: deliveries per second acknowledged on PostgreSQL by a server without an
#     executor (nothing is claimed), CONCURRENCY connections at once, REQUESTS deliveries each
#     time: without a key (the batched path), every delivery for one hot key, and keys spread
#     over 1000 subjects; `on_busy = "queue"` and `"skip"`.
#
#   bash benches/scripts/subjects.sh        # ROUNDS=40 SPACING_MS=50 REQUESTS=2000 CONCURRENCY=32
#   PROFILE=debug bash benches/scripts/subjects.sh   # the debug build (figures are not release's)
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-40}
SPACING_MS=${SPACING_MS:-50}
REQUESTS=${REQUESTS:-2000}
CONCURRENCY=${CONCURRENCY:-32}
PROFILE=${PROFILE:-release}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
schema=bench_subjects_$$

source benches/scripts/lib.sh
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --features server --bin agent-trigger
else
  cargo build --quiet --features server --bin agent-trigger
fi
binary="$TARGET_DIR/$PROFILE/agent-trigger"
postgres=yes
if ! { command -v psql >/dev/null && psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; }; then
  echo "no PostgreSQL answers at $PG_URL: its rounds are skipped"
  postgres=
fi

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$work"
  [ -n "$postgres" ] && psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null
  true
}
trap cleanup EXIT

# The command: its clock reading at start and its execution id.
cat > "$work/agent.sh" <<'SH'
#!/bin/sh
echo "$(date +%s%N) $AGENT_TRIGGER_EXECUTION_ID" >> "$OUT/started.txt"
SH
chmod +x "$work/agent.sh"

# `config FILE SETTINGS EXECUTOR`: the benchmark's key and trigger, with SETTINGS on the
# trigger, and EXECUTOR (an [executor] table, or nothing).
config() {
  local user=
  [ "$(id -u)" = 0 ] && user='user = "root"'
  {
    echo 'database = "subjects.db"'
    if [ "$3" = yes ]; then
      printf '[executor]\ncommand = ["%s"]\nworkers = 4\nenv = ["OUT"]\n%s\n' "$work/agent.sh" "$user"
    fi
    printf '[[keys]]\nid = "bench"\ntenant = "bench"\nenv = "API_KEY"\n'
    printf '[[triggers]]\nid = "%s"\ntenant = "bench"\nsource = "webhook"\n%b\n' "$TRIGGER_ID" "$2"
  } > "$1"
}

# `start DATABASE SETTINGS EXECUTOR`: a fresh server; sets $server and $port.
start() {
  rm -f "$work"/subjects.db* "$work/started.txt"
  config "$work/server.toml" "$2" "$3"
  local env=()
  if [ "$1" = postgres ]; then
    psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null 2>&1
    env=(AGENT_TRIGGER_DATABASE_URL="$PG_URL?options=-csearch_path%3D$schema")
  fi
  env "${env[@]}" OUT="$work" AGENT_TRIGGER_LOG=warn \
    "$binary" serve --config "$work/server.toml" --listen 127.0.0.1:0 > "$work/stdout" 2>/dev/null &
  server=$!
  for _ in $(seq 300); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/stdout")
    [ -n "$port" ] && return
    sleep 0.1
  done
  echo "the server did not start" >&2
  exit 1
}

stop() {
  kill "$server" && wait "$server" 2>/dev/null || true
  server=
}

latency() {
  start "$1" "concurrency_key = 'body.k'\ndebounce_secs = 1\ndebounce_max_secs = 10" yes
  python3 - "$port" "$work/started.txt" "$ROUNDS" "$SPACING_MS" "$1" <<'PY'
import http.client, json, os, sys, time, datetime
port, started, rounds, spacing, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
key, trigger = os.environ["API_KEY"], os.environ["TRIGGER_ID"]
connection = http.client.HTTPConnection("127.0.0.1", int(port))
def call(method, path, body=None):
    connection.request(method, path, body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return json.loads(connection.getresponse().read())
ids = []
for n in range(rounds):
    ids.append(call("POST", f"/api/trigger/webhook/{trigger}", json.dumps({"k": f"k-{n}"}))["executionId"])
    time.sleep(spacing / 1000)
deadline = time.time() + 60
while time.time() < deadline:
    lines = open(started).read().split("\n") if os.path.exists(started) else []
    if len([line for line in lines if line]) >= rounds:
        break
    time.sleep(0.2)
start_of = {line.split()[1]: int(line.split()[0]) for line in open(started).read().split("\n") if line}
lates = []
for id in ids:
    created = call("GET", f"/api/executions/{id}")["createdAt"]
    at = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    lates.append((start_of[id] / 1e9 - (at + 1.0)) * 1000)
lates.sort()
pick = lambda q: lates[min(len(lates) - 1, int(q * len(lates)))]
print(f"{name:9} quiet end -> command start: p50 {pick(0.5):6.1f} ms  p99 {pick(0.99):6.1f} ms  max {lates[-1]:6.1f} ms  ({len(lates)} executions)")
PY
  stop
}

throughput() {
  start postgres "$2" no
  python3 - "$port" "$REQUESTS" "$CONCURRENCY" "$1" "$3" <<'PY'
import http.client, json, os, sys, threading, time
port, requests, concurrency, name, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
key, trigger = os.environ["API_KEY"], os.environ["TRIGGER_ID"]
counter = iter(range(requests))
lock = threading.Lock()
outcomes = {}
def worker():
    connection = http.client.HTTPConnection("127.0.0.1", int(port))
    while True:
        with lock:
            n = next(counter, None)
        if n is None:
            return
        body = json.dumps({"k": f"k-{n % keys}" if keys else "", "n": n})
        connection.request("POST", f"/api/trigger/webhook/{trigger}", body,
                           {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        kind = f"{response.status} {'skipped' if answer.get('executionId') == 'skipped' else 'started'}"
        with lock:
            outcomes[kind] = outcomes.get(kind, 0) + 1
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
begun = time.time()
for thread in threads: thread.start()
for thread in threads: thread.join()
elapsed = time.time() - begun
print(f"{name:28} {requests / elapsed:8.0f} deliveries/s  {dict(sorted(outcomes.items()))}")
PY
  stop
}

echo "== (a) debounce: quiet period's end to the command's start ($PROFILE build)"
latency sqlite
[ -n "$postgres" ] && latency postgres
if [ -n "$postgres" ]; then
  echo "== (b) PostgreSQL, $CONCURRENCY connections, $REQUESTS deliveries ($PROFILE build)"
  throughput "no key (batched)" "" 0
  throughput "queue, one hot key" "concurrency_key = 'body.k'" 1
  throughput "queue, 1000 spread keys" "concurrency_key = 'body.k'" 1000
  throughput "skip, one hot key" "concurrency_key = 'body.k'\non_busy = \"skip\"" 1
  throughput "skip, 1000 spread keys" "concurrency_key = 'body.k'\non_busy = \"skip\"" 1000
fi
