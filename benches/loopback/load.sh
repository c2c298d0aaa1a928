# The load the loopback and durable scripts send, sourced by them: the servers' key and trigger
# (read from the environment by each server), the ~240-byte Jira body, `write_wrk_script FILE`,
# which writes the wrk script that posts it with the bearer key, `write_server_config`,
# `need_load_tools`, `await_acceptance` and `cpu_ticks`.

export API_KEY="atk_loopback_benchmark_key_0123456789abcdefghij"
export TRIGGER_ID="01936f1c-1c52-7a57-8f7e-9d438d2b8f1d"
# The example's stand-in runner drains executions without printing them.
export LOG_EXECUTIONS=0
BODY='{"timestamp":1732800000000,"webhookEvent":"jira:issue_created","issue":{"id":"10042","key":"SEC-42","fields":{"summary":"Rotate the leaked token","priority":{"name":"High"},"labels":["security","triage"]}},"user":{"accountId":"5b10ac8d82e05b22cc7d4ef5"}}'

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

# `need_load_tools`: wrk, installed when missing, and taskset, which pins servers and load.
need_load_tools() {
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
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
