#!/usr/bin/env bash
# Fetches the sources of Boost.Fiber and Boost.Context from Debian's own
# source package, for a tree that builds them itself with sanitizer
# annotations (scripts/sanitize.sh tsan; COPORT_BOOST_FIBER_SOURCE in
# CMakeLists.txt):
#
#   scripts/boost-source.sh DIR
#
# leaves DIR/boost/libs/{fiber,context}/src and prints DIR/boost. The
# version is the one of the installed Boost headers, so sources and headers
# match (or the mirror's, if it no longer has that revision). apt downloads it (checked against the archive's signature) through
# a deb-src list of the machine's own Debian mirror kept inside DIR: the
# machine's apt configuration is not changed. Nothing is fetched when DIR
# already holds the sources.
set -euo pipefail
dir=${1:?usage: scripts/boost-source.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
root=$dir/boost
if [[ -f $root/libs/fiber/src/scheduler.cpp && -f $root/libs/context/src/fiber.cpp ]]; then
  echo "$root"
  exit 0
fi

version=$(dpkg-query -W -f='${source:Version}' libboost1.81-dev)
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
# The mirror the machine installs Debian's packages from: the first deb URI
# serving the release itself (not its security archive).
mirror=$(
  {
    cat /etc/apt/sources.list 2>/dev/null || true
    for f in /etc/apt/sources.list.d/*.sources; do [[ -f $f ]] && { cat "$f"; echo; }; done
  } | awk -v rel="$codename" '
    /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i + 1) == rel) { print $i; exit } break } }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == rel && uri != "" && uri !~ /security/) { print uri; exit } }
    /^$/ { uri = "" }'
)
mirror=${mirror:-http://deb.debian.org/debian}

echo "boost-source: boost1.81 $version from $mirror into $dir" >&2
apt_dir=$dir/apt
mkdir -p "$apt_dir/lists/partial"
cat >"$apt_dir/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename-updates main
EOF
apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" update >&2
# The installed version; the mirror's own when it no longer offers that one
# (a Debian revision changes packaging, not Fiber's or Context's sources).
(cd "$dir" && { apt-get "${apt_opts[@]}" source --download-only "boost1.81=$version" >&2 ||
  apt-get "${apt_opts[@]}" source --download-only boost1.81 >&2; })

orig=$(ls "$dir"/boost1.81_*.orig.tar.xz)
rm -rf "$root"
# Only the two libraries' sources; the headers are Debian's installed ones.
tar -xJf "$orig" -C "$dir" --wildcards 'boost/libs/fiber/src/*' 'boost/libs/context/src/*'
rm -f "$dir"/boost1.81_*
echo "$root"
