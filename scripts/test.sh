#!/usr/bin/env bash
# README's second command: installs what is missing, builds everything once,
# and runs the whole test suite through ctest, in two trees:
#   build/           everything (COPORT_WITH_FIBERS=ON)
#   build/nofibers/  the fiber-free build: messaging, coro_executor, the
#                    bridge's coroutine side, their tests, the examples and
#                    the benchmark that need no fibers, configured so that
#                    Boost.Fiber and Boost.Context cannot be found: the proof
#                    that the fiber side can be removed.
# Extra arguments go to both ctest runs (-L executors, -R stop, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
echo "main tree built ($SECONDS s so far)"
build=${COPORT_BUILD_DIR:-build}
nofibers="$build/nofibers"

echo "building the fiberless tree ($nofibers)"
cmake -S . -B "$nofibers" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOPORT_WITH_FIBERS=OFF -DCOPORT_BUILD_TESTS=ON -DCOPORT_BUILD_EXAMPLES=ON -DCOPORT_BUILD_BENCH=ON \
  -DCOPORT_LINK_MAPS=ON -DCOPORT_TEST_RABBIT=OFF -DCOPORT_BUILD_TIDY=OFF \
  -DCMAKE_DISABLE_FIND_PACKAGE_boost_fiber=ON -DCMAKE_DISABLE_FIND_PACKAGE_boost_context=ON
cmake --build "$nofibers" --parallel "$(nproc)"
echo "fiberless tree built ($SECONDS s so far)"

echo "running the test suite (ctest, $(nproc) at a time)"
status=0
ctest --test-dir "$build" --output-on-failure --parallel "$(nproc)" "$@" || status=$?
echo "main tree's tests done ($SECONDS s so far); running the fiberless tree's tests"
ctest --test-dir "$nofibers" --output-on-failure --parallel "$(nproc)" "$@" || status=$?
if ((status != 0)); then
  echo "test suite FAILED"
  exit "$status"
fi
echo "test suite passed (both trees)"
