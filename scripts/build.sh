#!/usr/bin/env bash
# Configures and builds coport into ${COPORT_BUILD_DIR:-build} (one tree
# shared by the demo and the tests). Extra arguments are build targets.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${COPORT_BUILD_DIR:-build}
generator=()
if command -v ninja >/dev/null && [[ ! -f "$build/CMakeCache.txt" ]]; then generator=(-G Ninja); fi
# On this path (setup.sh has installed the broker, oslo.messaging and
# clang-tidy 16) the RabbitMQ tests and the coport-* clang-tidy module's must
# run: configuring fails rather than skip them.
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOPORT_BUILD_TESTS=ON \
  -DCOPORT_REQUIRE_RABBIT_TESTS=ON -DCOPORT_BUILD_TIDY=ON
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" --parallel "$(nproc)" "${targets[@]}"
