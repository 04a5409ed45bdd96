#!/usr/bin/env bash
# Load harness (issue 8): what authorization costs, measured against a bare proxy built from the
# same code, in one run on one machine, loopback only, every run bounded.
#
#   benches/load/run.sh                 # DUR=10 s per run, ROUNDS=2 (A/B/A/B), CONNS=64
#   DUR=5 ROUNDS=1 benches/load/run.sh  # a quick look
#   PROFILE=dev DUR=2 ROUNDS=1 benches/load/run.sh  # plumbing check with debug builds
#   IDENTITY=off benches/load/run.sh    # without the signed assertion (not the default)
#
# Targets, alternated in every round so drift hits them all alike:
#   direct       wrk -> bench-upstream                       (the ceiling)
#   passthrough  wrk -> bench-passthrough -> bench-upstream  (taxgate's proxy code, no authorization)
#   gateway      wrk -> taxgate serve -> bench-upstream      (session cached: the hot path)
#   nginx        wrk -> nginx (keepalive upstream) -> bench-upstream (what a user would deploy)
# Closed loop: wrk -t1 -cCONNS, HTTP/1.1 keep-alive, max throughput. Open loop: `openloop` at 50%
# of the pass-through's max, latency from the scheduled send time (no coordinated omission).
# HTTP/2 (prior knowledge): h2load, closed loop.
# Results: a Markdown table on stdout and in $OUT (default target/load-results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
OUT=${OUT:-target/load-results.md}
BASE=${BASE_PORT:-19000}
UP=$BASE PT=$((BASE + 1)) GW=$((BASE + 2)) GWADMIN=$((BASE + 3)) NGX=$((BASE + 4)) NGX2=$((BASE + 5))

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need h2load || ! need nginx; then
  echo "installing wrk, nghttp2-client (h2load) and nginx-light from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client nginx-light >/dev/null
fi

if [ "${PROFILE:-release}" = dev ]; then
  # Plumbing check only: debug figures mean nothing.
  cargo build -q -p taxgate --bin taxgate -p taxgate-benches --bins
  BIN=target/debug
else
  echo "building release binaries (minutes on 2 cores)" >&2
  cargo build --release -q -p taxgate --bin taxgate -p taxgate-benches --bins
  BIN=target/release
fi

WORK=$(mktemp -d /tmp/taxgate-load.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
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
"$BIN/bench-passthrough" "127.0.0.1:$PT" "http://127.0.0.1:$UP" 2>/dev/null & PIDS+=($!)

# The gateway: SQLite, the repository's policies, one route, one logged-in session, and the
# identity assertions it refuses to start without (the figures include signing them).
# IDENTITY=off measures without them (`disabled = true`), to compare with figures taken before
# they were the default; the default run measures the secure default.
"$BIN/taxgate" keys generate --out "$WORK/assertion.pem" >/dev/null
if [ "${IDENTITY:-on}" = off ]; then
  IDENTITY_TOML="disabled = true"
else
  IDENTITY_TOML="signing_key = \"$WORK/assertion.pem\""
fi
cat >"$WORK/taxgate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW"
[admin]
listen = "127.0.0.1:$GWADMIN"
[store]
url = "sqlite://$WORK/taxgate.db"
[policies]
dir = "$PWD/policies"
watch = false
[sms]
provider = "file"
path = "$WORK/outbox.jsonl"
[session]
cookie_secure = false
[login]
sms_resend_secs = 0
# The login storm below comes from one address: lift the per-client limit for the bench.
auth_requests_per_minute = 10000000
[upstream_identity]
$IDENTITY_TOML
[[upstreams]]
name = "up"
url = "http://127.0.0.1:$UP"
pool_max_idle = 256
[[routes]]
prefix = "/api/declare"
action = "declare"
upstream = "up"
EOF
cat >"$WORK/seed.json" <<'EOF'
{"persons": [{"id_number": "140105199001011238", "name": "王芳", "username": "wangfang",
              "phone": "13800138000", "password": "Chang3-Me!now"}],
 "enterprises": [{"taxpayer_id": "91140100MA0K123488", "name": "太原示例科技有限公司", "agency": false}],
 "bindings": [{"person": "140105199001011238", "enterprise": "91140100MA0K123488",
               "role": "legal_representative", "enterprise_confirmed": true, "person_confirmed": true}]}
EOF
"$BIN/taxgate" import --config "$WORK/taxgate.toml" "$WORK/seed.json" >/dev/null
RUST_LOG=warn "$BIN/taxgate" serve --config "$WORK/taxgate.toml" 2>"$WORK/gateway.log" & PIDS+=($!)
wait_port "$UP"; wait_port "$PT"; wait_port "$GW"

TOKEN=$(python3 - "$GW" "$WORK/outbox.jsonl" <<'PY'
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
print(r.headers["set-cookie"].split(";")[0].split("=", 1)[1])
PY
)
COOKIE="Cookie: taxgate_session=$TOKEN"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "$COOKIE" "http://127.0.0.1:$GW/api/declare/x")
[ "$status" = 200 ] || { echo "the gateway refused the bench session: $status" >&2; exit 1; }

cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # Like the load tools' connections, keep-alive connections are never recycled mid-run.
  keepalive_requests 10000000;
  http2_max_requests 10000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  # nginx 1.22 speaks only h2c on a cleartext "http2" listener: one port per protocol.
  server {
    listen 127.0.0.1:$NGX;
    listen 127.0.0.1:$NGX2 http2;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf"
wait_port "$NGX"

declare -A URL=(
  [direct]="http://127.0.0.1:$UP/api/declare/x"
  [passthrough]="http://127.0.0.1:$PT/api/declare/x"
  [gateway]="http://127.0.0.1:$GW/api/declare/x"
  [nginx]="http://127.0.0.1:$NGX/api/declare/x"
)
declare -A URL2=(
  [direct]="${URL[direct]}"
  [passthrough]="${URL[passthrough]}"
  [gateway]="${URL[gateway]}"
  [nginx]="http://127.0.0.1:$NGX2/api/declare/x"
)
TARGETS=(direct passthrough gateway nginx)
header_for() { [ "$1" = gateway ] && echo "$COOKIE" || echo "X-Bench: 1"; }

declare -A RPS H2 P50 P99
for t in "${TARGETS[@]}"; do RPS[$t]=""; H2[$t]=""; done
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    r=$(wrk -t1 -c"$CONNS" -d"${DUR}s" -H "$(header_for "$t")" "${URL[$t]}" | awk '/Requests\/sec/ {print $2}')
    RPS[$t]="${RPS[$t]} $r"
    echo "round $round $t http/1.1: $r req/s" >&2
  done
  # Ports that speak HTTP/2 with prior knowledge: the upstream, both taxgate proxies, nginx.
  for t in "${TARGETS[@]}"; do
    r=$(h2load -D "$DUR" -c 16 -m 8 -H "$(header_for "$t")" "${URL2[$t]}" 2>/dev/null | awk '/^finished in/ {print $4}')
    H2[$t]="${H2[$t]} $r"
    echo "round $round $t h2: $r req/s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A M M2
for t in "${TARGETS[@]}"; do
  M[$t]=$(echo "${RPS[$t]}" | median)
  M2[$t]=$(echo "${H2[$t]}" | median)
done

RATE=$(awk -v m="${M[passthrough]}" 'BEGIN {printf "%d", m / 2}')
for t in "${TARGETS[@]}"; do
  json=$("$BIN/openloop" --url "${URL[$t]}" --rate "$RATE" --duration "$DUR" --connections "$CONNS" --header "$(header_for "$t")")
  P50[$t]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p50_us"])' "$json")
  P99[$t]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p99_us"])' "$json")
  echo "open loop $t @ $RATE/s: $json" >&2
done

# Login storm: closed-loop password logins (argon2id each) while the open loop keeps the
# proxied route at the same 50% rate, to see what a storm costs proxied latency.
STORM_CONC=${STORM_CONC:-16}
LOGIN_BODY='{"entry":"enterprise","taxpayer_id":"91140100MA0K123488","account":"wangfang","password":"Chang3-Me!now"}'
"$BIN/loginstorm" --url "http://127.0.0.1:$GW/auth/login" --body "$LOGIN_BODY" \
  --concurrency "$STORM_CONC" --duration "$DUR" >"$WORK/storm.json" &
STORM_PID=$!
storm_proxied=$("$BIN/openloop" --url "${URL[gateway]}" --rate "$RATE" --duration "$DUR" --connections "$CONNS" --header "$COOKIE")
wait "$STORM_PID"
storm=$(cat "$WORK/storm.json")
echo "login storm: $storm; proxied meanwhile: $storm_proxied" >&2
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

{
  echo "## Load: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, DUR=${DUR}s ROUNDS=$ROUNDS CONNS=$CONNS"
  echo
  echo "| target | HTTP/1.1 req/s (median) | vs pass-through | HTTP/2 req/s | p50 µs @ $RATE/s | p99 µs @ $RATE/s |"
  echo "|---|---|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    ratio=$(awk -v a="${M[$t]}" -v b="${M[passthrough]}" 'BEGIN {if (b > 0) printf "%.0f%%", 100 * a / b; else print "-"}')
    echo "| $t | ${M[$t]} | $ratio | ${M2[$t]} | ${P50[$t]} | ${P99[$t]} |"
  done
  echo
  echo "Added latency of the gateway over the pass-through at 50% load: p50 $(( ${P50[gateway]} - ${P50[passthrough]} )) µs, p99 $(( ${P99[gateway]} - ${P99[passthrough]} )) µs."
  echo
  echo "Login storm ($STORM_CONC clients, password step, ${DUR}s): $(jget "$storm" logins_per_sec) logins/s, login p50 $(jget "$storm" p50_ms) ms, p99 $(jget "$storm" p99_ms) ms, $(jget "$storm" failures) failures."
  echo "Proxied meanwhile @ $RATE/s: p50 $(jget "$storm_proxied" p50_us) µs, p99 $(jget "$storm_proxied" p99_us) µs, $(jget "$storm_proxied" errors) errors (without the storm: p50 ${P50[gateway]} µs, p99 ${P99[gateway]} µs)."
} | tee "$OUT"
