#!/usr/bin/env bash
# Installs the Debian 12 packages the suite needs to build, test and run. Quick when everything
# is already there: only missing packages are passed to apt-get.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache mold
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libpqxx-dev libpq-dev libhiredis-dev prometheus-cpp-dev libssl-dev libjwt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql redis-server prometheus
  python3 python3-yaml
  curl openssl
  podman runc netavark aardvark-dns catatonit debootstrap podman-compose
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -o DPkg::Lock::Timeout=600 >/dev/null || true
  apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

# The Debian packages start system-wide PostgreSQL and Redis servers; the suite runs its own on
# loopback ports of its choosing, so the system ones are left alone and never used.

# PostgreSQL refuses to run as root; the suite's own servers run as this unprivileged user.
if [[ $(id -u) -eq 0 ]] && ! id dangjian >/dev/null 2>&1; then
  useradd --system --create-home --shell /usr/sbin/nologin dangjian
fi

# --- Proto tooling: buf from npm (tools/proto), for the test command's `buf lint` and `buf
# breaking` and for `buf curl`. Node.js and npm come from Debian's archive when there is no npm on
# PATH. Checked by command, not by package: a machine may carry another build of Node.js that
# bundles its own npm (and conflicts with Debian's npm package); that one is used as it is.
if ! command -v npm >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: npm is missing; run as root to install nodejs and npm" >&2
    exit 1
  fi
  echo "deps: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -o DPkg::Lock::Timeout=600 >/dev/null || true
  apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 nodejs npm
fi
bash "$(dirname "${BASH_SOURCE[0]}")/../tools/proto/install.sh"
