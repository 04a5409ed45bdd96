#!/usr/bin/env bash
# What traces cost (issue 20): the gateway on its hot path (one cached session, signed assertion
# on) with `[telemetry]` export off, on (to a collector that answers 200: a second
# bench-upstream), and on towards a collector that is down. Alternated A/B/C per round.
#
#   DUR=10 ROUNDS=2 benches/load/telemetry.sh   (SKIP_BUILD=1: use target/release as it is)
# Needs wrk; builds release binaries (minutes on 2 cores). Results on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
BASE=${BASE_PORT:-19100}
UP=$BASE COLL=$((BASE + 1)) DEAD=$((BASE + 2))
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p taxgate --bin taxgate -p taxgate-benches --bin bench-upstream
BIN=target/release
WORK=$(mktemp -d /tmp/taxgate-otel.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}
"$BIN/bench-upstream" "127.0.0.1:$UP" 2>/dev/null & PIDS+=($!)
"$BIN/bench-upstream" "127.0.0.1:$COLL" 2>/dev/null & PIDS+=($!)
"$BIN/taxgate" keys generate --out "$WORK/assertion.pem" >/dev/null
cat >"$WORK/seed.json" <<'JSON'
{"persons": [{"id_number": "140105199001011238", "name": "王芳", "username": "wangfang",
              "phone": "13800138000", "password": "Chang3-Me!now"}],
 "enterprises": [{"taxpayer_id": "91140100MA0K123488", "name": "太原示例科技有限公司", "agency": false}],
 "bindings": [{"person": "140105199001011238", "enterprise": "91140100MA0K123488",
               "role": "legal_representative", "enterprise_confirmed": true, "person_confirmed": true}]}
JSON
declare -A PORT=([off]=$((BASE + 10)) [on]=$((BASE + 12)) [down]=$((BASE + 14)))
declare -A TELEMETRY=([off]="" [on]="otlp_endpoint = \"http://127.0.0.1:$COLL\"" [down]="otlp_endpoint = \"http://127.0.0.1:$DEAD\"")
declare -A COOKIE
for v in off on down; do
  mkdir -p "$WORK/$v"
  cat >"$WORK/$v/taxgate.toml" <<TOML
[server]
listen = "127.0.0.1:${PORT[$v]}"
[admin]
listen = "127.0.0.1:$((PORT[$v] + 1))"
[store]
url = "sqlite://$WORK/$v/taxgate.db"
[policies]
dir = "$PWD/policies"
watch = false
[sms]
provider = "file"
path = "$WORK/$v/outbox.jsonl"
[session]
cookie_secure = false
[login]
sms_resend_secs = 0
[upstream_identity]
signing_key = "$WORK/assertion.pem"
[telemetry]
${TELEMETRY[$v]}
[[upstreams]]
name = "up"
url = "http://127.0.0.1:$UP"
pool_max_idle = 256
[[routes]]
prefix = "/api/declare"
action = "declare"
upstream = "up"
TOML
  "$BIN/taxgate" import --config "$WORK/$v/taxgate.toml" "$WORK/seed.json" >/dev/null
  RUST_LOG=warn "$BIN/taxgate" serve --config "$WORK/$v/taxgate.toml" 2>"$WORK/$v/gateway.log" & PIDS+=($!)
  wait_port "${PORT[$v]}"
  COOKIE[$v]=$(python3 - "${PORT[$v]}" "$WORK/$v/outbox.jsonl" <<'PY'
import json, sys, urllib.request
port, outbox = sys.argv[1], sys.argv[2]
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return urllib.request.urlopen(req)
c = json.load(post("/auth/login", {"entry": "enterprise", "taxpayer_id": "91140100MA0K123488",
                                   "account": "wangfang", "password": "Chang3-Me!now"}))["challenge"]
post("/auth/sms/send", {"challenge": c})
code = json.loads(open(outbox).read().splitlines()[-1])["code"]
r = post("/auth/sms/verify", {"challenge": c, "code": code})
print(r.headers["set-cookie"].split(";")[0])
PY
)
done
echo "| round | export off | export on | collector down |"
echo "|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  row="| $r |"
  for v in off on down; do
    rps=$(wrk -t1 -c"$CONNS" -d"${DUR}s" -H "Cookie: ${COOKIE[$v]#Cookie: }" \
      "http://127.0.0.1:${PORT[$v]}/api/declare/x" | awk '/Requests\/sec/ {print $2}')
    row="$row $rps |"
  done
  echo "$row"
done
for v in on down; do
  m=$(curl -s "http://127.0.0.1:$((PORT[$v] + 1))/metrics" | grep -E '^taxgate_trace_(spans_exported|export_failures)_total|^taxgate_requests_total' | tr '\n' ' ')
  echo "$v: $m"
done
