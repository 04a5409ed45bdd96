#!/usr/bin/env bash
# Soak: the real `taxgate serve` (debug build, SQLite) on loopback under mixed traffic — logins
# with SMS, identity switches, logouts, proxied requests, policy reloads every 30 s — for
# SOAK_SECS seconds (default 600). Fails (exit 1) on any unexpected answer, RSS growth of 10 % or
# more after warm-up, or a decision missing from the audit table. Not part of CI.
#
#   benches/soak/run.sh                 # 10 minutes
#   SOAK_SECS=120 SOAK_WORKERS=4 benches/soak/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo build -q -j"${CARGO_JOBS:-2}" -p taxgate --manifest-path "$root/Cargo.toml"
exec python3 "$root/benches/soak/soak.py" --bin "$root/target/debug/taxgate" --policies "$root/policies" "$@"
