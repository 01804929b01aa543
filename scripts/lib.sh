# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Shared by scripts/run-tests, scripts/run-demo and .ci/run; source it.

# The repository root, whatever the caller's working directory.
ARMOR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

armor_say() { printf '==> %s\n' "$*"; }

# armor_require <debian package>...
#
# Makes sure the Debian packages are installed. Missing ones are installed
# with apt-get when running as root; otherwise prints the one command to run
# and exits 1. Tools are named by package too: cmake, ninja-build, g++, clang.
# Without dpkg (not Debian or Ubuntu) it only says what it would want and
# lets CMake report anything missing.
armor_require() {
  local missing=() pkg
  if ! command -v dpkg-query >/dev/null 2>&1; then
    armor_say "not a Debian system: make sure these (or your system's equivalents) are installed: $*"
    return 0
  fi
  for pkg in "$@"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" -eq 0 ]]; then
    armor_say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
  else
    printf 'armor needs these packages, which are not installed: %s\n' "${missing[*]}" >&2
    printf 'Install them with:\n\n    sudo apt-get install -y %s\n\n' "${missing[*]}" >&2
    exit 1
  fi
}

# What building armor needs at all, and what each part adds.
ARMOR_BUILD_PACKAGES=(cmake ninja-build g++)
# The demo: an HTTP upstream and client (cpp-httplib, found with pkg-config),
# output with fmt. The release preset builds without Redis.
ARMOR_DEMO_PACKAGES=(libasio-dev libfmt-dev libsqlite3-dev libcpp-httplib-dev pkg-config)
# The whole suite: every integration (Asio, fmt, SQLite, hiredis, prometheus-cpp), the HTTP
# examples (libcurl, cpp-httplib), and the real servers and tools the tests
# start or call (redis-server; promtool, from the prometheus package).
ARMOR_TEST_PACKAGES=(libasio-dev libfmt-dev libsqlite3-dev libhiredis-dev catch2 libbenchmark-dev python3
                     libcpp-httplib-dev libcurl4-openssl-dev pkg-config redis-server prometheus
                     prometheus-cpp-dev)

armor_jobs() { nproc 2>/dev/null || echo 2; }
