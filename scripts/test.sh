#!/usr/bin/env bash
# README's second command: installs what is missing, builds everything once,
# and runs the whole test suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
build=${COPORT_BUILD_DIR:-build}
echo "running the test suite (ctest, $(nproc) at a time)"
ctest --test-dir "$build" --output-on-failure --parallel "$(nproc)" "$@"
