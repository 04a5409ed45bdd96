#!/usr/bin/env bash
# Population scenarios (issue 17): what a request costs as the live population grows, in one
# run, side by side with the bare pass-through and nginx, loopback only, every step bounded.
#
#   benches/load/population.sh                      # the full matrix (over an hour, release)
#   SIZES="1 100000" STORES=sqlite AUDIT=0 SKEWS=0 benches/load/population.sh   # one slice
#   PROFILE=dev SIZES="1 1000" DUR=2 ROUNDS=1 WARMUP=1 AUDIT="0 20000" benches/load/population.sh
#                                                   # plumbing check with debug builds
#
# For each store (STORES: sqlite, postgres), audit history (AUDIT: rows pre-grown in
# audit_events) and population size (SIZES: live sessions), `population` fills a fresh store
# (the bulk fixtures: roles, agents, person-entry sessions as logins leave them; only token
# hashes stored) and writes the tokens; the gateway then runs in its default secure
# configuration (signed identity assertions with a key from `taxgate keys generate`, the
# default caches) in front of `bench-upstream`. For each skew (SKEWS: 0 uniform, s > 0 Zipf
# exponent), after a sweep (every session's first request, once each, in order: what a
# population that has been live for a while has done) and WARMUP seconds of load on the gateway:
#   closed loop  popload -cCONNS for DUR s against pass-through, nginx and gateway, alternated
#                ROUNDS times (median kept): the same requests, rotating over the same tokens
#   open loop    popload --mode open at 50% of the pass-through's median for DUR s against
#                each: p50/p99 from the scheduled send time (no coordinated omission)
# (DIRECT=1 adds the client straight to bench-upstream to the closed loop: its ceiling)
# then the gateway's VmRSS (and its anonymous part) is read from /proc.
# Results: a Markdown table on stdout and in $OUT (default target/population-results.md); the
# raw JSON lines of every run in $OUT.jsonl.
#
# PERF=N: after the warm-up, record a CPU profile of the gateway for N s under the closed loop
# (perf, DWARF call graphs) to $OUT.<store:audit:size:skew>.perf.
# TIMELINE=1: the warm-up runs in DUR-second slices, each reported on stderr with its req/s
# and the gateway's session, decision and audit counters (what comes due when).
# GW_EXTRA: TOML appended to the gateway's config (e.g. $'[session]\nentity_cache_capacity = 0'),
# to measure a setting against the default.
#
# INSTANCES=2: with STORES=postgres, two gateway instances on the same database; the load
# client spreads its connections over both (ports BASE_PORT+5 and +6). SQLite runs stay single.
#
# PostgreSQL: TAXGATE_TEST_PG_URL (e.g. from /tmp/taxgate-pg.env) names a database of a cluster
# where this script may create and drop databases `taxgate_pop_*`.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"1 10000 100000 1000000"}
STORES=${STORES:-"sqlite postgres"}
AUDIT=${AUDIT:-"0 10000000"}
SKEWS=${SKEWS:-"0 1.0"}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-5}
FILL_TIMEOUT=${FILL_TIMEOUT:-3600}
OUT=${OUT:-target/population-results.md}
BASE=${BASE_PORT:-19100}
UP=$BASE PT=$((BASE + 1)) GW=$((BASE + 2)) GWADMIN=$((BASE + 3)) NGX=$((BASE + 4))
GW2=$((BASE + 5)) GWADMIN2=$((BASE + 6))
INSTANCES=${INSTANCES:-1}

if [[ " $STORES " == *" postgres "* ]] && [ -z "${TAXGATE_TEST_PG_URL:-}" ]; then
  echo "STORES includes postgres but TAXGATE_TEST_PG_URL is not set" >&2
  exit 2
fi
command -v nginx >/dev/null 2>&1 || {
  echo "installing nginx-light from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
}

if [ "${PROFILE:-release}" = dev ]; then
  # Plumbing check only: debug figures mean nothing.
  cargo build -q -p taxgate --bin taxgate -p taxgate-benches --bins
  BIN=target/debug
else
  echo "building release binaries (minutes on 2 cores)" >&2
  cargo build --release -q -p taxgate --bin taxgate -p taxgate-benches --bins
  BIN=target/release
fi

WORK=$(mktemp -d /tmp/taxgate-pop.XXXXXX)
PIDS=()
GWPID=""
PGDBS=()
pg_admin() { psql -qAt "$TAXGATE_TEST_PG_URL" -c "$1" >/dev/null; }
stop_gateway() {
  if [ -n "$GWPID" ]; then
    kill "$GWPID" 2>/dev/null || true
    wait "$GWPID" 2>/dev/null || true
    GWPID=""
  fi
  if [ -n "${GWPID2:-}" ]; then
    kill "$GWPID2" 2>/dev/null || true
    wait "$GWPID2" 2>/dev/null || true
    GWPID2=""
  fi
}
cleanup() {
  stop_gateway
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  for db in "${PGDBS[@]}"; do pg_admin "DROP DATABASE IF EXISTS $db" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

"$BIN/bench-upstream" "127.0.0.1:$UP" 2>/dev/null & PIDS+=($!)
"$BIN/bench-passthrough" "127.0.0.1:$PT" "http://127.0.0.1:$UP" 2>/dev/null & PIDS+=($!)
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf"
wait_port "$UP" && wait_port "$PT" && wait_port "$NGX" || exit 1

# The secure default: assertions signed with a generated Ed25519 key.
"$BIN/taxgate" keys generate --out "$WORK/assertion.pem" >/dev/null

gateway_config() { # $1: store URL, $2: config file (default taxgate.toml), $3/$4: ports
  cat >"$WORK/${2:-taxgate.toml}" <<EOF
[server]
listen = "127.0.0.1:${3:-$GW}"
[admin]
listen = "127.0.0.1:${4:-$GWADMIN}"
[store]
url = "$1"
[policies]
dir = "$PWD/policies"
[sms]
provider = "file"
path = "$WORK/outbox.jsonl"
[upstream_identity]
signing_key = "$WORK/assertion.pem"
[[upstreams]]
name = "up"
url = "http://127.0.0.1:$UP"
pool_max_idle = 256
[[routes]]
prefix = "/api/query"
action = "query"
upstream = "up"
[[routes]]
prefix = "/api/declare"
action = "declare"
upstream = "up"
[[routes]]
prefix = "/api/invoice"
action = "invoice"
upstream = "up"
[[routes]]
prefix = "/api/personal_tax"
action = "personal_tax"
upstream = "up"
${GW_EXTRA:-}
EOF
}

declare -A URL=(
  [direct]="http://127.0.0.1:$UP"
  [passthrough]="http://127.0.0.1:$PT"
  [nginx]="http://127.0.0.1:$NGX"
  [gateway]="http://127.0.0.1:$GW"
)
TARGETS=(passthrough nginx gateway)
# DIRECT=1: also the load client straight to bench-upstream, to show it is not the ceiling.
[ "${DIRECT:-0}" = 1 ] && TARGETS=(direct "${TARGETS[@]}")
declare -A R
ROWS=()
: >"$OUT.jsonl"
run_load() { # $1 target, $2 tokens, $3 skew, rest: popload flags
  local t=$1 tokens=$2 skew=$3
  shift 3
  local json
  json=$("$BIN/popload" --url "${URL[$t]}" --tokens "$tokens" --skew "$skew" --connections "$CONNS" "$@")
  echo "$json" >>"$OUT.jsonl"
  echo "$json"
}

for size in $SIZES; do
  for store in $STORES; do
    for audit in $AUDIT; do
      key="$store:$audit:$size"
      tokens="$WORK/tokens-$size"
      if [ "$store" = sqlite ]; then
        url="sqlite://$WORK/pop-$size-$audit.db"
      else
        db="taxgate_pop_${size}_${audit}_$$"
        pg_admin "DROP DATABASE IF EXISTS $db"
        pg_admin "CREATE DATABASE $db"
        PGDBS+=("$db")
        url="${TAXGATE_TEST_PG_URL%/*}/$db"
      fi
      fill=$(timeout "$FILL_TIMEOUT" "$BIN/population" --store "$url" --sessions "$size" \
        --tokens "$tokens" --audit-rows "$audit")
      echo "$key fill: $fill" >&2
      gateway_config "$url"
      RUST_LOG=warn "$BIN/taxgate" serve --config "$WORK/taxgate.toml" 2>"$WORK/gateway.log" &
      GWPID=$!
      wait_port "$GW" || { cat "$WORK/gateway.log" >&2; exit 1; }
      URL[gateway]="http://127.0.0.1:$GW"
      if [ "$INSTANCES" = 2 ] && [ "$store" = postgres ]; then
        # A second instance on the same database: the load client spreads its connections
        # over both, so revocations and activity cross instances as in a real deployment.
        gateway_config "$url" taxgate2.toml "$GW2" "$GWADMIN2"
        RUST_LOG=warn "$BIN/taxgate" serve --config "$WORK/taxgate2.toml" 2>"$WORK/gateway2.log" &
        GWPID2=$!
        wait_port "$GW2" || { cat "$WORK/gateway2.log" >&2; exit 1; }
        URL[gateway]="http://127.0.0.1:$GW,http://127.0.0.1:$GW2"
      fi
      # The secure default is what is measured: the gateway publishes the signing key.
      jwks=$(curl -sf "http://127.0.0.1:$GWADMIN/.well-known/jwks.json" || true)
      [[ $jwks == *'"kid"'* ]] || {
        echo "the gateway does not sign identity assertions" >&2
        exit 1
      }
      # Every session's first request, once each (a random warm-up leaves a third of a big
      # population never seen, so a measured run would be mostly first requests).
      sweep=$(run_load gateway "$tokens" 0 --sweep)
      echo "$key sweep: $sweep" >&2
      for skew in $SKEWS; do
        k="$key:$skew"
        if [ "${TIMELINE:-0}" = 1 ]; then
          # The warm-up in DUR-second slices: each slice's req/s and the gateway's counters
          # (cumulative), to see what comes due when (backstop checks, slice refreshes).
          t0=$SECONDS
          while [ $((SECONDS - t0)) -lt "$WARMUP" ]; do
            json=$(run_load gateway "$tokens" "$skew" --duration "$DUR")
            m=$( (curl -sf --max-time 5 "http://127.0.0.1:$GWADMIN/metrics" || true) | awk '/^taxgate_(session_loads|session_revalidations|session_slices_built|session_decisions_evaluated|audit_events_written)_total |^taxgate_audit_queue_depth /{sub("taxgate_", "", $1); sub("_total", "", $1); printf "%s=%s ", $1, $2}')
            echo "$k timeline +$((SECONDS - t0))s: $(jget "$json" rps) req/s $m" >&2
          done
        else
          run_load gateway "$tokens" "$skew" --duration "$WARMUP" >/dev/null
        fi
        if [ -n "${PERF:-}" ]; then
          # A CPU profile of the gateway under this load (PERF seconds), kept beside $OUT.
          perf record -q -F 299 --call-graph dwarf,8192 -p "$GWPID" -o "$OUT.$k.perf" -- sleep "$PERF" 2>/dev/null &
          perfpid=$!
          run_load gateway "$tokens" "$skew" --duration "$PERF" >/dev/null
          wait "$perfpid" || true
          echo "$k profile: $OUT.$k.perf (perf report -i …)" >&2
        fi
        declare -A RPS=([direct]="" [passthrough]="" [nginx]="" [gateway]="")
        gw_closed=""
        for round in $(seq 1 "$ROUNDS"); do
          for t in "${TARGETS[@]}"; do
            json=$(run_load "$t" "$tokens" "$skew" --duration "$DUR")
            RPS[$t]="${RPS[$t]} $(jget "$json" rps)"
            if [ "$t" = gateway ]; then gw_closed=$json; fi
            echo "$k round $round $t closed: $json" >&2
          done
        done
        for t in "${TARGETS[@]}"; do R[$k:$t:rps]=$(echo "${RPS[$t]}" | median); done
        R[$k:denied]=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); n=j["ok"]+j["denied"]; print("%.1f%%" % (100*j["denied"]/n if n else 0))' "$gw_closed")
        R[$k:errors]=$(jget "$gw_closed" errors)
        rate=$(awk -v m="${R[$k:passthrough:rps]}" 'BEGIN {printf "%d", m / 2}')
        [ "$rate" -gt 0 ] || rate=1
        R[$k:rate]=$rate
        for t in passthrough nginx gateway; do
          json=$(run_load "$t" "$tokens" "$skew" --mode open --rate "$rate" --duration "$DUR")
          R[$k:$t:p50]=$(jget "$json" p50_us)
          R[$k:$t:p99]=$(jget "$json" p99_us)
          if [ "$t" = gateway ]; then
            R[$k:orps]=$(jget "$json" rps)
            e=${R[$k:errors]}
            R[$k:errors]=$((e + $(jget "$json" errors)))
          fi
          echo "$k open @ $rate/s $t: $json" >&2
        done
        # (with INSTANCES=2: the first instance's)
        R[$k:rss]=$(( $(kib "$GWPID" VmRSS) / 1024 ))
        R[$k:anon]=$(( $(kib "$GWPID" RssAnon) / 1024 ))
        ROWS+=("$k")
      done
      stop_gateway
      if [ "$store" = sqlite ]; then rm -f "$WORK/pop-$size-$audit.db"*; else pg_admin "DROP DATABASE IF EXISTS $db"; fi
    done
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0 && a != "") printf "%.2f", a / b; else print "-"}'; }
{
  echo "## Population: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${PROFILE:-release}, DUR=${DUR}s ROUNDS=$ROUNDS CONNS=$CONNS WARMUP=${WARMUP}s"
  echo
  echo "Closed loop: req/s (median of $ROUNDS). Open loop at 50% of the pass-through's max: p50/p99 in µs (a gateway that cannot sustain that rate shows its queue: see the achieved rate). µs/req: 1e6 / gateway req/s (both cores' time per request). RSS: the gateway's VmRSS (anonymous part) after the runs."
  echo
  echo "| store | audit rows | sessions | skew | direct req/s | pass-through req/s | nginx req/s | gateway req/s | µs/req | vs 1 session | vs pass-through | vs nginx | p50 / p99 pass-through | p50 / p99 nginx | p50 / p99 gateway (achieved req/s) | denied | errors | RSS MiB (anon) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for k in "${ROWS[@]}"; do
    IFS=':' read -r store audit size skew <<<"$k"
    one="$store:$audit:1:$skew:gateway:rps"
    gw=${R[$k:gateway:rps]}
    us=$(awk -v r="$gw" 'BEGIN {if (r > 0) printf "%.1f", 1e6 / r; else print "-"}')
    echo "| $store | $audit | $size | $skew | ${R[$k:direct:rps]:--} | ${R[$k:passthrough:rps]} | ${R[$k:nginx:rps]} | $gw | $us | $(ratio "$gw" "${R[$one]:-}") | $(ratio "$gw" "${R[$k:passthrough:rps]}") | $(ratio "$gw" "${R[$k:nginx:rps]}") | ${R[$k:passthrough:p50]} / ${R[$k:passthrough:p99]} | ${R[$k:nginx:p50]} / ${R[$k:nginx:p99]} | ${R[$k:gateway:p50]} / ${R[$k:gateway:p99]} (${R[$k:orps]}) | ${R[$k:denied]} | ${R[$k:errors]} | ${R[$k:rss]} (${R[$k:anon]}) |"
  done
} | tee "$OUT"
