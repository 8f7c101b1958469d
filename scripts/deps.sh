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
  iptables ca-certificates debian-archive-keyring
)
# Packages are installed without their Recommends, so everything the tools above run at run time
# is named here even when Debian ranks it only a Recommends or a Suggests (`apt-cache depends`):
#   iptables     netavark (the network of compose's containers) runs it to set up NAT and
#                forwarding; without it every container on a network fails to start with
#                "netavark: No such file or directory". Only a Suggests of podman.
#   netavark, aardvark-dns  a Depends-or (netavark | containernetworking-plugins) and a Recommends:
#                named so the backend is the one podman 4.3 defaults to, with DNS between containers
#   catatonit    the init of a pod's infra container (`podman play kube`); a Recommends of podman
#   runc         podman depends on crun | runc; crun refuses this kernel's hybrid cgroups
#   debian-archive-keyring  debootstrap (a Recommends) checks the archive's Release signature with
#                it; without it debootstrap skips the check
#   ca-certificates  debootstrap's wget (a Recommends) on a mirror reached over https
# Not needed: buildah (podman build carries its own), uidmap, slirp4netns, fuse-overlayfs and
# dbus-user-session (rootless podman only; the suite's containers run as root), nftables (iptables
# talks to the kernel's nf_tables itself), prometheus-node-exporter.

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Installs Debian packages "$@" (as root; otherwise says what is missing and fails).
apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages ($*); run as root to install them" >&2
    exit 1
  fi
  echo "deps: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -o DPkg::Lock::Timeout=600 >/dev/null || true
  apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
}

if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

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
if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
bash "$(dirname "${BASH_SOURCE[0]}")/../tools/proto/install.sh"
