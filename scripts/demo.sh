#!/usr/bin/env bash
# README's first command: installs what is missing, builds, and runs the
# project's main job. Arguments go to the program.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh coport-bridge-tour
exec "${COPORT_BUILD_DIR:-build}/examples/coport-bridge-tour" "$@"
