# What the scripts in benches/scripts share; each sources it from the repository's root. The
# load they send: the servers' key and trigger (read from the environment by each server), the
# ~240-byte Jira body, the wrk script that posts it with the bearer key and the standalone
# server's configuration. Then the tools they need, waiting for a server, its CPU time,
# medians, and callgrind's count of a server's instructions under load.

# Where cargo builds, and so where the scripts find what it built and leave their profiles.
TARGET_DIR=${CARGO_TARGET_DIR:-target}

export API_KEY="atk_loopback_benchmark_key_0123456789abcdefghij"
export TRIGGER_ID="01936f1c-1c52-7a57-8f7e-9d438d2b8f1d"
# The example's stand-in runner drains executions without printing them.
export LOG_EXECUTIONS=0
BODY='{"timestamp":1732800000000,"webhookEvent":"jira:issue_created","issue":{"id":"10042","key":"SEC-42","fields":{"summary":"Rotate the leaked token","priority":{"name":"High"},"labels":["security","triage"]}},"user":{"accountId":"5b10ac8d82e05b22cc7d4ef5"}}'

# `write_wrk_script FILE`: the wrk script that posts the body with the bearer key.
write_wrk_script() {
  cat > "$1" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $API_KEY"
LUA
}

# `write_server_config FILE DATABASE`: the standalone server's configuration for this load: the
# key above (read from API_KEY) and one `webhook` trigger with its TRIGGER_ID.
write_server_config() {
  cat > "$1" <<TOML
database = "$2"

[[keys]]
id = "bench"
tenant = "bench"
env = "API_KEY"

[[triggers]]
id = "$TRIGGER_ID"
tenant = "bench"
source = "webhook"
TOML
}

# `install_missing COMMAND PACKAGE`: installs PACKAGE with apt-get when COMMAND is not found.
install_missing() {
  command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2"; }
}

# `need_load_tools`: wrk, installed when missing, and taskset, which pins servers and load.
need_load_tools() {
  install_missing wrk wrk
  command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
}

# `need_profile_tools`: wrk and valgrind, installed when missing.
need_profile_tools() {
  install_missing wrk wrk
  install_missing valgrind valgrind
}

# `need_cargo_fuzz`: a nightly toolchain, and cargo-fuzz, installed when missing.
need_cargo_fuzz() {
  rustup toolchain list 2>/dev/null | grep -q '^nightly' ||
    { echo "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
}

# `await_acceptance NAME URL`: posts the body until URL accepts it (200), for up to 10 s; a
# server that does not is named on stderr and the script ends.
await_acceptance() {
  local status
  for _ in $(seq 100); do
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$2" \
      -H 'Content-Type: application/json' -H "Authorization: Bearer $API_KEY" -d "$BODY" || true)
    [ "$status" = 200 ] && return
    sleep 0.1
  done
  echo "$1 did not answer 200" >&2
  exit 1
}

# `cpu_ticks PID`: the process's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# `median`: the median of the numbers on stdin, separated by spaces or lines.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# `callgrind_count NAME PORT PATH COMMAND...` runs COMMAND under callgrind with
# LISTEN_ADDR=127.0.0.1:PORT, loads it with wrk (the script in $WRK_SCRIPT, $CONNECTIONS
# connections) at PATH, and prints `REQUESTS INSTRUCTIONS`: the requests of a measured run of
# $DURATION and the user-space instructions it took. Counting is zeroed after a warm-up load and
# dumped after the measured one, so start-up and warm-up drop out; the dump stays in
# $TARGET_DIR/profile/NAME.out. Call it in a command substitution: its subshell stops its own
# server however it ends.
callgrind_count() {
  local name=$1 port=$2 path=$3; shift 3
  server=
  trap '[ -n "$server" ] && kill "$server" 2>/dev/null' EXIT
  local out="$TARGET_DIR/profile/$name.out"
  mkdir -p "$TARGET_DIR/profile"
  rm -f "$out" "$out".*
  LISTEN_ADDR="127.0.0.1:$port" valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
    >/dev/null 2>&1 &
  server=$!
  local url="http://127.0.0.1:$port$path"
  # Any answer means it listens.
  for _ in $(seq 150); do
    curl -s -o /dev/null -X POST "$url" && break
    sleep 0.2
  done
  wrk -t1 -c"$CONNECTIONS" -d3s -s "$WRK_SCRIPT" "$url" >/dev/null
  callgrind_control -z "$server" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$WRK_SCRIPT" "$url" |
    awk '/requests in/ {print $1}')
  callgrind_control -d "$server" >/dev/null 2>&1
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
  local dump
  dump=$(ls -t "$out".* | head -1)
  mv "$dump" "$out"
  rm -f "$out".*
  echo "$requests $(callgrind_total "$out")"
}

# `callgrind_total FILE`: the instructions a callgrind profile counted in all.
callgrind_total() {
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

# `bench_binary NAME`: builds benches/NAME.rs (release) and prints its executable's path.
bench_binary() {
  local binary
  binary=$(cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
    sed -n "s/.*\"executable\":\"\([^\"]*$1[^\"]*\)\".*/\1/p" | tail -1)
  [ -x "$binary" ] || { echo "could not build benches/$1.rs" >&2; exit 1; }
  echo "$binary"
}
