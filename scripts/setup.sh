#!/usr/bin/env bash
# Installs every Debian 12 package coport needs to build, test and run, and
# nothing else. Safe to run again: it asks apt only for what is missing.
# Must run as root (or through sudo) on a machine that reaches Debian's mirror.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build make pkg-config
  # Boost 1.81 (headers incl. Asio; compiled Fiber, Context, JSON, URL)
  libboost1.81-dev libboost-fiber1.81-dev libboost-context1.81-dev
  libboost-json1.81-dev libboost-url1.81-dev
  # logging and tests
  libspdlog-dev catch2
  # command lines (CLI11, header only)
  libcli11-dev
  # RabbitMQ transport, its test broker and the Python interop peer
  rabbitmq-server python3-oslo.messaging python3-eventlet librabbitmq-dev openssl
  # scripts/boost-source.sh (sanitizer trees) unpacks Boost's .orig.tar.xz
  xz-utils
  # Boost.Fiber's own Asio examples (tests/boost_examples builds them stock
  # and moved onto coport; without them those tests are skipped)
  libboost1.81-doc
  # the clang-tidy module coport-* (tools/tidy): Debian's clang-tidy loads it
  # with --load; it is built against clang's and LLVM's headers and CMake files
  clang-tidy-16 libclang-16-dev llvm-16-dev
  # coport-port (tools/port) reads the fixes clang-tidy exports (YAML); its
  # tests apply the diff it prints with patch, and compile what it writes
  # with clang++-16
  python3-yaml patch clang-16
  # coport::admin's /metrics (prometheus-cpp's text serializer), and its
  # tests: a real Prometheus server scrapes coport-demo, headless Chromium
  # renders the dashboard and drives its policy form over the DevTools
  # protocol (python3-websocket)
  prometheus-cpp-dev prometheus chromium python3-websocket
)
# Packages a script needs beyond these (scripts/fuzz.sh: clang and libFuzzer).
read -r -a extra <<<"${COPORT_SETUP_EXTRA:-}"
packages+=("${extra[@]}")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
as_root=()
if [[ $(id -u) -ne 0 ]]; then as_root=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
