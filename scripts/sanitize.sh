#!/usr/bin/env bash
# The test suite under sanitizers, in trees next to build/:
#
#   scripts/sanitize.sh [asan|tsan|all] [ctest arguments...]
#
#   asan (the default): build/asan, the whole project (bridge and
#        fiber_executor included, the example programs, no benchmark) with
#        AddressSanitizer and UndefinedBehaviorSanitizer, and its whole
#        suite, the RabbitMQ tests included.
#   tsan: build/tsan, the same project with ThreadSanitizer, and the same
#        suite; then build/tsan-nofibers, the fiber-free bridge's programs
#        (its tests, coport-kv-ported, coport-bench-primitives) and their
#        tests with ThreadSanitizer. Suppressions, each with its reason:
#        tests/sanitizers/tsan.supp.
#   all: both (CI runs this after scripts/test.sh).
#
#   Both trees build Boost.Fiber and Boost.Context themselves, from Debian's
#   source package (scripts/boost-source.sh, into build/boost-src), with
#   the annotations that tell the sanitizers about each fiber switch, which
#   Debian's shared libraries lack (COPORT_BOOST_FIBER_SOURCE in
#   CMakeLists.txt).
#
# rabbit_sustained is left out of both: it checks that memory does not grow
# over three minutes of load, which the sanitizers' own bookkeeping (ASan
# holds freed memory back in quarantine) would decide, and it would take
# three more minutes per run; scripts/test.sh runs it. TSan also leaves out
# the channel test with 10 000 fibers alive at once: ThreadSanitizer keeps
# the state of a thread for each fiber, and 10 000 of them took 6 GB and
# more than the test's 30 s; the other channel tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
which=asan
if [[ $# -gt 0 && ( $1 == asan || $1 == tsan || $1 == all ) ]]; then which=$1; shift; fi
./scripts/setup.sh
build=${COPORT_BUILD_DIR:-build}
jobs=$(nproc)
# Optimised a little and with line tables only: the trees build in half the
# time of RelWithDebInfo and reports still name file and line. The ASan tree
# is optimised for debugging (-Og) instead: g++ compiles code instrumented
# for ASan and UBSan at -Og in about half the time of -O1 (measured on
# tests/executors/test_fiber_executor.cpp: 52 s against 102 s), and its
# suite, which mostly waits on brokers and timers, barely notices.
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1"
  -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_BENCH=OFF)
boost_src=$(./scripts/boost-source.sh "$build/boost-src")
common+=(-DCOPORT_WITH_FIBERS=ON -DCOPORT_BUILD_EXAMPLES=ON "-DCOPORT_BOOST_FIBER_SOURCE=$boost_src")
# The RabbitMQ tests' windows between their own steps grow threefold
# (tests/rabbit/harness.py): rabbit_listener_crash reads the broker with
# rabbitmqctl while a listener holds a notification for 6 s, and once the
# listener ran past it on a loaded machine.
export COPORT_TEST_TIME_SCALE=3
# Run in the main tree only: the three minutes of sustained load, and the
# interop suites again on quorum queues (the same driver code as the
# classic runs here; the quorum declarations, refusals and redeliveries
# are rabbit_driver's [quorum] cases and rabbit_quorum_mismatch, which do
# run here). The cluster's node loss runs under TSan (its reconnections
# and failover are threads' work) and not again under ASan.
rabbit_once='^rabbit_sustained$|^rabbit_quorum_interop_|^rabbit_quorum_notifications$'
status=0

if [[ $which == asan || $which == all ]]; then
  echo "sanitize: building $build/asan (ASan + UBSan, the whole project)"
  cmake -S . -B "$build/asan" "${common[@]}" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-Og -g1" \
    -DCOPORT_SANITIZE=address,undefined
  cmake --build "$build/asan" --parallel "$jobs"
  echo "sanitize: the suite under ASan + UBSan ($SECONDS s so far)"
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp" \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$build/asan" --output-on-failure --parallel "$jobs" -LE install -E "$rabbit_once|^rabbit_cluster_" "$@" || status=$?
fi

if [[ $which == tsan || $which == all ]]; then
  echo "sanitize: building $build/tsan (TSan, the whole project; $SECONDS s so far)"
  cmake -S . -B "$build/tsan" "${common[@]}" -DCOPORT_SANITIZE=thread
  cmake --build "$build/tsan" --parallel "$jobs"
  echo "sanitize: the suite under TSan ($SECONDS s so far)"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp" \
    ctest --test-dir "$build/tsan" --output-on-failure --parallel "$jobs" -LE install \
    -E "$rabbit_once|^ten thousand fibers and ten thousand coroutines" "$@" || status=$?

  # The fiber-free bridge has a loop of its own (bridge/src/native_loop.cpp),
  # which the trees above do not build: its programs, under TSan, in a tree
  # without fibers (only the targets its suite here runs).
  echo "sanitize: building $build/tsan-nofibers (TSan, the fiber-free bridge; $SECONDS s so far)"
  cmake -S . -B "$build/tsan-nofibers" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DCOPORT_WITH_FIBERS=OFF -DCOPORT_SANITIZE=thread \
    -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_EXAMPLES=ON -DCOPORT_BUILD_BENCH=ON -DCOPORT_TEST_RABBIT=OFF -DCOPORT_LINK_MAPS=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_boost_fiber=ON -DCMAKE_DISABLE_FIND_PACKAGE_boost_context=ON
  cmake --build "$build/tsan-nofibers" --parallel "$jobs" \
    --target coport_bridge_core_tests coport-kv-ported coport-bench-primitives
  echo "sanitize: the fiber-free bridge's suite under TSan ($SECONDS s so far)"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp" \
    ctest --test-dir "$build/tsan-nofibers" --output-on-failure --parallel "$jobs" \
    -L 'bridge|line_service|bench' "$@" || status=$?
fi

if ((status != 0)); then
  echo "sanitizers FAILED ($which)"
  exit "$status"
fi
echo "sanitizers passed ($which)"
