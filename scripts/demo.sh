#!/usr/bin/env bash
# README's first command: installs what is missing, builds, and runs the
# project's main job, coport-demo. Arguments go to the program
# (--phases, --calls N, --transport URL, --json, --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh coport-demo
exec "${COPORT_BUILD_DIR:-build}/examples/demo/coport-demo" "$@"
