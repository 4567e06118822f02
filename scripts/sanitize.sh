#!/usr/bin/env bash
# The test suite under sanitizers, in two trees next to build/:
#   build/asan   everything, with AddressSanitizer and UndefinedBehaviorSanitizer
#   build/tsan   the multi-threaded parts without fibers (messaging, the
#                rabbit:// driver and its thread, coro_executor on several
#                threads), with ThreadSanitizer
# Fibers switch stacks with Boost.Context, which Debian's Boost builds
# without sanitizer annotations: ASan runs the fiber side with the
# settings below (COPORT_SANITIZE's help says why); ThreadSanitizer cannot
# follow those switches at all, so the fiber side is not in build/tsan.
# Extra arguments go to every ctest run. .ci/run runs this after
# scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
build=${COPORT_BUILD_DIR:-build}
jobs=$(nproc)
# Optimised a little and with line tables only: the trees build in half the
# time of RelWithDebInfo and reports still name file and line.
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1")

echo "sanitize: building $build/asan (ASan + UBSan, everything but the benchmarks)"
cmake -S . -B "$build/asan" -G Ninja "${flags[@]}" -DCOPORT_SANITIZE=address,undefined \
  -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_EXAMPLES=ON -DCOPORT_BUILD_BENCH=OFF
cmake --build "$build/asan" --parallel "$jobs"

echo "sanitize: building $build/tsan (TSan, no fibers)"
cmake -S . -B "$build/tsan" -G Ninja "${flags[@]}" -DCOPORT_SANITIZE=thread \
  -DCOPORT_WITH_FIBERS=OFF -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_EXAMPLES=OFF -DCOPORT_BUILD_BENCH=OFF \
  -DCMAKE_DISABLE_FIND_PACKAGE_boost_fiber=ON -DCMAKE_DISABLE_FIND_PACKAGE_boost_context=ON
cmake --build "$build/tsan" --parallel "$jobs"

# Every report is an error; leaks are reported at exit. detect_stack_use_after_return
# stays off: its fake stacks do not follow Boost.Context's stack switches.
export ASAN_OPTIONS=abort_on_error=0:halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

status=0
echo "sanitize: the whole suite under ASan + UBSan"
ctest --test-dir "$build/asan" --output-on-failure --parallel "$jobs" -LE "bench|install" "$@" || status=$?
echo "sanitize: the multi-threaded parts under TSan"
ctest --test-dir "$build/tsan" --output-on-failure --parallel "$jobs" -L "executors|messaging|rabbit" "$@" || status=$?
if ((status != 0)); then
  echo "sanitizers FAILED"
  exit "$status"
fi
echo "sanitizers passed (ASan + UBSan: everything; TSan: messaging, rabbit driver, coro_executor)"
