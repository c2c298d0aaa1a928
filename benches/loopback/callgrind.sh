# Sourced by the profile scripts. `need_profile_tools`: wrk and valgrind, installed when missing.
need_profile_tools() {
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
}

# `callgrind_count NAME PORT PATH COMMAND...` runs COMMAND
# under callgrind with LISTEN_ADDR=127.0.0.1:PORT, loads it with wrk (the script in
# $WRK_SCRIPT, $CONNECTIONS connections) at PATH, and prints `REQUESTS INSTRUCTIONS`: the
# requests of a measured run of $DURATION and the user-space instructions it took. Counting is
# zeroed after a warm-up load and dumped after the measured one, so start-up and warm-up drop
# out; the dump stays in target/profile/NAME.out. Call it in a command substitution: its
# subshell stops its own server however it ends.
callgrind_count() {
  local name=$1 port=$2 path=$3; shift 3
  server=
  trap '[ -n "$server" ] && kill "$server" 2>/dev/null' EXIT
  local out="target/profile/$name.out"
  mkdir -p target/profile
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
  echo "$requests $(callgrind_annotate "$out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
}
