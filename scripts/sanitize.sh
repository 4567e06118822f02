#!/usr/bin/env bash
# The test suite under sanitizers, in trees next to build/:
#
#   scripts/sanitize.sh [asan|tsan|all] [ctest arguments...]
#
#   asan (the default): build/asan, the whole project (bridge and
#        fiber_executor included, the example programs, no benchmark) with
#        AddressSanitizer and UndefinedBehaviorSanitizer, and its whole
#        suite, the RabbitMQ tests included. With fibers, ASan's stack
#        instrumentation is off (COPORT_SANITIZE's help in CMakeLists.txt
#        says why); heap, globals, leaks and UBSan are checked everywhere.
#   tsan: build/tsan, the project without fibers with ThreadSanitizer, and
#        the tests of the multi-threaded parts (messaging, the driver's
#        thread, coro_executor on several threads). Suppressions, each with
#        its reason: tests/sanitizers/tsan.supp. The fiber side is not in
#        it: ThreadSanitizer cannot follow Boost.Context's stack switches.
#   all: both (CI runs this after scripts/test.sh).
#
# rabbit_sustained is left out of both: it checks that memory does not grow
# over three minutes of load, which the sanitizers' own bookkeeping (ASan
# holds freed memory back in quarantine) would decide, and it would take
# three more minutes per run; scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
which=asan
if [[ $# -gt 0 && ( $1 == asan || $1 == tsan || $1 == all ) ]]; then which=$1; shift; fi
./scripts/setup.sh
build=${COPORT_BUILD_DIR:-build}
jobs=$(nproc)
# Optimised a little and with line tables only: the trees build in half the
# time of RelWithDebInfo and reports still name file and line.
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1"
  -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_BENCH=OFF)
fiberless=(-DCOPORT_WITH_FIBERS=OFF
  -DCMAKE_DISABLE_FIND_PACKAGE_boost_fiber=ON -DCMAKE_DISABLE_FIND_PACKAGE_boost_context=ON)
status=0

if [[ $which == asan || $which == all ]]; then
  echo "sanitize: building $build/asan (ASan + UBSan, the whole project)"
  cmake -S . -B "$build/asan" "${common[@]}" -DCOPORT_WITH_FIBERS=ON -DCOPORT_SANITIZE=address,undefined \
    -DCOPORT_BUILD_EXAMPLES=ON
  cmake --build "$build/asan" --parallel "$jobs"
  echo "sanitize: the suite under ASan + UBSan"
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp" \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$build/asan" --output-on-failure --parallel "$jobs" -LE install -E '^rabbit_sustained$' "$@" || status=$?
fi

if [[ $which == tsan || $which == all ]]; then
  echo "sanitize: building $build/tsan (TSan, no fibers)"
  cmake -S . -B "$build/tsan" "${common[@]}" "${fiberless[@]}" -DCOPORT_SANITIZE=thread -DCOPORT_BUILD_EXAMPLES=OFF
  cmake --build "$build/tsan" --parallel "$jobs"
  echo "sanitize: the multi-threaded parts under TSan"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp" \
    ctest --test-dir "$build/tsan" --output-on-failure --parallel "$jobs" -L "executors|messaging|rabbit" -E '^rabbit_sustained$' "$@" ||
    status=$?
fi

if ((status != 0)); then
  echo "sanitizers FAILED ($which)"
  exit "$status"
fi
echo "sanitizers passed ($which)"
