#!/usr/bin/env bash
# Fuzz every parser of outside input with libFuzzer, each target for a bounded time. The CI
# stage (.ci/run, after the tests) is this script with its defaults.
#
#   .ci/fuzz.sh                          # smoke test, then every target for FUZZ_SECS (20) s,
#                                        # FUZZ_JOBS (2) targets at a time
#   FUZZ_SECS=600 .ci/fuzz.sh ids seed   # longer runs of some targets
#   FUZZ_MERGE=1 .ci/fuzz.sh             # also add a set cover of what was found to fuzz/corpus/
#                                        # (keep the committed corpus to a few hundred KiB)
#
# The targets are built the way cargo-fuzz builds them (SanitizerCoverage passes, `--cfg
# fuzzing`, libFuzzer from libfuzzer-sys) but with the stable toolchain, for the explicit host
# triple, into the workspace's target directory: RUSTFLAGS then reach only the target's crates
# (in target/<triple>/), and the build scripts and proc macros the workspace build already
# compiled are reused. Nothing to install beyond a C++ compiler (libFuzzer). FUZZ_ASAN=1 adds
# AddressSanitizer, which needs nightly (the code is `forbid(unsafe_code)`; dependencies are not).
#
# Each run starts from the committed corpus (fuzz/corpus/<t>, read only) and keeps new inputs
# in target/fuzz-corpus/<t>, so the working tree stays clean. A crash fails the stage and leaves
# fuzz/artifacts/<t>/crash-*: turn it into a regression test in the normal suite, then fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS="${FUZZ_SECS:-20}"
JOBS="${FUZZ_JOBS:-2}"
ALL=(ids config face_verify session_headers json_fields seed request_path)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
TARGET_DIR="$(cd .. && pwd)/target"
started=$SECONDS

echo "== smoke: corpus and random inputs through every target (stable, no libFuzzer)"
# The fuzz crate's Cargo.lock is the workspace's plus libfuzzer-sys: this reuses what the
# workspace build compiled.
cargo test -j"$JOBS" --quiet --target-dir "$TARGET_DIR"

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
FLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
FLAGS="$FLAGS -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
FLAGS="$FLAGS -Cllvm-args=-sanitizer-coverage-pc-table"
FLAGS="$FLAGS -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# Unoptimised by default: the build is most of the stage's time. FUZZ_OPT_LEVEL=1 builds
# slower and runs about twice as many inputs per second, for long runs.
FLAGS="$FLAGS -Copt-level=${FUZZ_OPT_LEVEL:-0}"
TOOLCHAIN=()
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
  FLAGS="$FLAGS -Zsanitizer=address"
  TOOLCHAIN=(+nightly)
fi
echo "== building the targets with libFuzzer instrumentation ($TRIPLE)"
build_started=$SECONDS
# No debug info: a third of the link time and of the disk.
RUSTFLAGS="$FLAGS" CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0 \
  cargo "${TOOLCHAIN[@]}" build -j"$JOBS" --quiet --target "$TRIPLE" --target-dir "$TARGET_DIR" --bins
echo "   built in $((SECONDS - build_started)) s"

# One target per core at a time; each writes its own log, shown when it ends.
run_target() {
  local t="$1" bin="$TARGET_DIR/$TRIPLE/debug/$1" scratch="$TARGET_DIR/fuzz-corpus/$1"
  local log="$TARGET_DIR/fuzz-$1.log"
  mkdir -p "artifacts/$t" "$scratch"
  if "$bin" "$scratch" "corpus/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$SECS" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    echo "== $t: $(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" \
      | sed 's/^stat:://; s/: */=/' | tr '\n' ' ')"
  else
    tail -n 40 "$log"
    echo "!! $t: crash or timeout; the input is in fuzz/artifacts/$t/"
    return 1
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    local min="$TARGET_DIR/fuzz-min/$t"
    rm -rf "$min" && mkdir -p "$min"
    "$bin" -set_cover_merge=1 "$min" "corpus/$t" "$scratch" >/dev/null 2>&1
    cp -n "$min"/* "corpus/$t/" 2>/dev/null || true
    echo "   corpus/$t: $(find "corpus/$t" -type f | wc -l) files"
  fi
}

echo "== running each target for ${SECS} s, ${JOBS} at a time"
status=0
pids=()
for t in "${TARGETS[@]}"; do
  run_target "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
echo "== fuzz stage: $((SECONDS - started)) s"
exit $status
