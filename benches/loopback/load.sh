# The load the loopback and durable scripts send, sourced by them: the servers' key and trigger
# (read from the environment by each server), the ~240-byte Jira body, `write_wrk_script FILE`,
# which writes the wrk script that posts it with the bearer key, and `need_load_tools`.

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
