#!/usr/bin/env bash
# Fuzzes what a server reads from the network with libFuzzer: the wire
# decoder (decode) and a request's way through the dispatcher and argument
# conversion (dispatch). Builds ${COPORT_FUZZ_DIR:-build-fuzz} with clang,
# libFuzzer, ASan and UBSan (messaging only: no fibers, no rabbit://), then
# runs each target for RUNS executions (default 10 000 000) on a copy of
# the checked-in corpus, in parallel, one job per target.
#
#   scripts/fuzz.sh [RUNS] [TARGET...]        e.g. scripts/fuzz.sh 1000000 decode
#
# A finding (crash, sanitizer report, failed check) stops its target and
# leaves the input as build-fuzz/findings/<target>/crash-*; replay it with
# build-fuzz/tests/fuzz/coport-fuzz-<target> FILE. New inputs that reach
# new code are written to build-fuzz/findings/<target>/corpus; merge them
# into tests/fuzz/corpus/<target> with
#   build-fuzz/tests/fuzz/coport-fuzz-<target> -merge=1 tests/fuzz/corpus/<target> build-fuzz/findings/<target>/corpus
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10000000}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(decode dispatch)
COPORT_SETUP_EXTRA="clang-16 libclang-rt-16-dev" ./scripts/setup.sh
build=${COPORT_FUZZ_DIR:-build-fuzz}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-16 \
  -DCOPORT_FUZZ=ON -DCOPORT_SANITIZE=address,undefined -DCOPORT_WITH_FIBERS=OFF -DCOPORT_WITH_RABBIT=OFF \
  -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_EXAMPLES=OFF -DCOPORT_BUILD_BENCH=OFF -DCOPORT_TEST_RABBIT=OFF
cmake --build "$build" --parallel "$(nproc)" $(printf -- '--target coport-fuzz-%s ' "${targets[@]}")

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
pids=()
for t in "${targets[@]}"; do
  out="$build/findings/$t"
  rm -rf "$out/corpus" && mkdir -p "$out/corpus"
  echo "fuzz: $t, $runs executions (log: $out/log)"
  "$build/tests/fuzz/coport-fuzz-$t" -runs="$runs" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$out/" "$out/corpus" "tests/fuzz/corpus/$t" >"$out/log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    echo "fuzz: $t: $(grep -E '^stat::number_of_executed_units' "$build/findings/$t/log" | awk '{print $2}') executions, no finding"
  else
    status=1
    echo "fuzz: $t FAILED; the end of its log:"
    tail -n 40 "$build/findings/$t/log"
  fi
done
exit "$status"
