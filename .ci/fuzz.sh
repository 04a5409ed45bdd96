#!/usr/bin/env bash
# Fuzz every parser of outside input with libFuzzer, each target bounded (not part of .ci/run).
#
#   .ci/fuzz.sh                 # every target for FUZZ_SECS (60) seconds
#   FUZZ_SECS=600 .ci/fuzz.sh ids config
#
# Uses `cargo fuzz` when installed; otherwise builds the same way it does (nightly rustc with
# SanitizerCoverage passes, `--cfg fuzzing`) so nothing needs installing beyond a nightly
# toolchain. First the stable smoke test runs the committed corpus through every target.
# New inputs that find new coverage are kept in fuzz/corpus/<target>/ (commit the useful ones);
# a crash leaves fuzz/artifacts/<target>/crash-*: turn it into a regression test, then fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS="${FUZZ_SECS:-60}"
ALL=(ids config face_verify session_headers json_fields)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
JOBS="${FUZZ_JOBS:-2}"

echo "== smoke: corpus and random inputs through every target (stable)"
# Shares the workspace's target directory: the fuzz crate's Cargo.lock is the workspace's plus
# libfuzzer-sys, so the stable build reuses what `cargo build` already compiled.
cargo test -j"$JOBS" --quiet --target-dir ../target

status=0
if cargo fuzz --version >/dev/null 2>&1; then
  for t in "${TARGETS[@]}"; do
    echo "== cargo fuzz run $t for ${SECS}s"
    cargo +nightly fuzz run --dev "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 || status=1
  done
  exit $status
fi

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# The dev profile with opt-level 1 (not --release): this machine's cores are shared.
export RUSTFLAGS="$RUSTFLAGS -Copt-level=1"
echo "== building the targets with libFuzzer instrumentation (nightly, $TRIPLE)"
cargo +nightly build -j"$JOBS" --target "$TRIPLE" --bins
for t in "${TARGETS[@]}"; do
  mkdir -p "artifacts/$t"
  echo "== $t for ${SECS}s"
  "target/$TRIPLE/debug/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12 \
    || { echo "!! $t: crash, see fuzz/artifacts/$t/"; status=1; }
done
exit $status
