#!/usr/bin/env bash
# External authorization (issue 18): what taxgate costs behind the proxy an operator already
# runs, in one run on one machine, loopback only, every run bounded.
#
#   benches/load/ext_authz.sh                 # DUR=10 s per run, ROUNDS=2 (alternated), CONNS=64
#   DUR=5 ROUNDS=1 benches/load/ext_authz.sh  # a quick look
#   PROFILE=dev DUR=2 ROUNDS=1 benches/load/ext_authz.sh   # plumbing check with debug builds
#
# Targets (closed loop, wrk -t1 -cCONNS, HTTP/1.1 keep-alive, one logged-in session), alternated
# in every round so drift hits them all alike:
#   nginx          wrk -> nginx -> bench-upstream                       (no authorization at all)
#   nginx+taxgate  wrk -> nginx (auth_request -> taxgate /ext/auth-request) -> bench-upstream
#   inline         wrk -> taxgate serve (public listener) -> bench-upstream
# and the gRPC Check latency: `checkload` (tonic, the envoy-types protos) calling
# Authorization/Check on `[ext_authz] grpc_listen`, CHECK_CONC callers on one HTTP/2
# connection, as Envoy multiplexes its calls.
# The gateway runs its secure default (signed identity assertions) with the repository's
# policies on SQLite; nginx's auth_request subrequest uses a keep-alive upstream to taxgate,
# as the README's configuration does.
# Results: a Markdown table on stdout and in $OUT (default target/ext-authz-results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
CHECK_CONC=${CHECK_CONC:-64}
OUT=${OUT:-target/ext-authz-results.md}
BASE=${BASE_PORT:-19200}
UP=$BASE GW=$((BASE + 1)) GWADMIN=$((BASE + 2)) EXT=$((BASE + 3)) GRPC=$((BASE + 4)) NGX=$((BASE + 5)) NGXA=$((BASE + 6))

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
  echo "installing wrk and nginx-light from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
if [ "${PROFILE:-release}" = dev ]; then
  # Plumbing check only: debug figures mean nothing.
  cargo build -q -p taxgate --bin taxgate -p taxgate-benches --bin bench-upstream --bin checkload
  BIN=target/debug
else
  echo "building release binaries (minutes on 2 cores)" >&2
  cargo build --release -q -p taxgate --bin taxgate -p taxgate-benches --bin bench-upstream --bin checkload
  BIN=target/release
fi
WORK=$(mktemp -d /tmp/taxgate-ext-load.XXXXXX)
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
"$BIN/taxgate" keys generate --out "$WORK/assertion.pem" >/dev/null
cat >"$WORK/taxgate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW"
[admin]
listen = "127.0.0.1:$GWADMIN"
[ext_authz]
listen = "127.0.0.1:$EXT"
grpc_listen = "127.0.0.1:$GRPC"
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
[upstream_identity]
signing_key = "$WORK/assertion.pem"
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
wait_port "$UP"; wait_port "$GW"; wait_port "$EXT"; wait_port "$GRPC"
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

# nginx: one server without authorization, one with auth_request to taxgate (the README's
# configuration, less the login locations the bench does not use).
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  upstream taxgate_ext { server 127.0.0.1:$EXT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$NGXA;
    location = /_taxgate_auth {
      internal;
      proxy_pass http://taxgate_ext/ext/auth-request;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
    location /api/ {
      auth_request /_taxgate_auth;
      auth_request_set \$tg_person \$upstream_http_x_taxgate_person;
      auth_request_set \$tg_enterprise \$upstream_http_x_taxgate_enterprise;
      auth_request_set \$tg_role \$upstream_http_x_taxgate_role;
      auth_request_set \$tg_entry \$upstream_http_x_taxgate_entry;
      auth_request_set \$tg_agency \$upstream_http_x_taxgate_agency;
      auth_request_set \$tg_decision \$upstream_http_x_taxgate_decision;
      auth_request_set \$tg_assertion \$upstream_http_x_taxgate_assertion;
      proxy_set_header X-Taxgate-Person \$tg_person;
      proxy_set_header X-Taxgate-Enterprise \$tg_enterprise;
      proxy_set_header X-Taxgate-Role \$tg_role;
      proxy_set_header X-Taxgate-Entry \$tg_entry;
      proxy_set_header X-Taxgate-Agency \$tg_agency;
      proxy_set_header X-Taxgate-Decision \$tg_decision;
      proxy_set_header X-Taxgate-Assertion \$tg_assertion;
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf"
wait_port "$NGX"; wait_port "$NGXA"

declare -A URL=(
  [nginx]="http://127.0.0.1:$NGX/api/declare/x"
  [nginx+taxgate]="http://127.0.0.1:$NGXA/api/declare/x"
  [inline]="http://127.0.0.1:$GW/api/declare/x"
)
for t in nginx+taxgate inline; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "$COOKIE" "${URL[$t]}")
  [ "$status" = 200 ] || { echo "$t refused the bench session: $status" >&2; cat "$WORK/nginx-error.log" >&2; exit 1; }
done
status=$(curl -s -o /dev/null -w '%{http_code}' "${URL[nginx+taxgate]}")
[ "$status" = 401 ] || { echo "nginx+taxgate let a request without a session through: $status" >&2; exit 1; }

TARGETS=(nginx nginx+taxgate inline)
declare -A RPS P50 P99
for t in "${TARGETS[@]}"; do RPS[$t]=""; P50[$t]=""; P99[$t]=""; done
GRPC_RUNS=()
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "$COOKIE" "${URL[$t]}")
    r=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    [ -z "$non2xx" ] || { echo "$t: $non2xx non-2xx answers" >&2; exit 1; }
    RPS[$t]="${RPS[$t]} $r"; P50[$t]="${P50[$t]} $p50"; P99[$t]="${P99[$t]} $p99"
    echo "round $round $t: $r req/s, p50 $p50, p99 $p99" >&2
  done
  json=$("$BIN/checkload" --addr "127.0.0.1:$GRPC" --cookie "taxgate_session=$TOKEN" \
    --duration "$DUR" --concurrency "$CHECK_CONC")
  GRPC_RUNS+=("$json")
  echo "round $round grpc Check: $json" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A M
for t in "${TARGETS[@]}"; do M[$t]=$(echo "${RPS[$t]}" | median); done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

{
  echo "## ext_authz load: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, DUR=${DUR}s ROUNDS=$ROUNDS CONNS=$CONNS"
  echo
  echo "| target | req/s (median) | vs nginx alone | vs inline | wrk p50 / p99 per round |"
  echo "|---|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    echo "| $t | ${M[$t]} | $(ratio "${M[$t]}" "${M[nginx]}") | $(ratio "${M[$t]}" "${M[inline]}") |${P50[$t]} /${P99[$t]} |"
  done
  echo
  echo "gRPC Authorization/Check, $CHECK_CONC callers on one HTTP/2 connection, per round:"
  for j in "${GRPC_RUNS[@]}"; do
    echo "- $(jget "$j" calls_per_sec) calls/s, p50 $(jget "$j" p50_us) µs, p90 $(jget "$j" p90_us) µs, p99 $(jget "$j" p99_us) µs"
  done
} | tee "$OUT"
