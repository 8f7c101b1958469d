#!/usr/bin/env bash
# Builds the suite's container images with podman, without a registry or a Docker engine:
#   localhost/dangjian-base:12       Debian 12 minbase made with debootstrap from the mirror in
#                                    this machine's apt sources (read now, never stored here)
#   localhost/dangjian-registry:REV  dj-registry and dj-health from a CMake build folder, with
#                                    only their runtime libraries (Debian packages); also :latest
#   localhost/dangjian-postgres:15   PostgreSQL 15 from Debian, initialising its volume on start
#   localhost/dangjian-redis:7       Redis 7 from Debian, as a cache (no persistence)
# The base is made once per machine: reused when podman holds it, else loaded from a `podman
# save` in the cache folder (~/.cache/dangjian, DJ_IMAGE_CACHE), else debootstrapped (~1 min).
# The other images are rebuilt every time (podman's layer cache makes that quick).
#
#   bash deploy/images/build.sh --build-dir DIR [--rebuild-base] [--only base|registry|postgres|redis]
#
# DIR is a CMake build folder holding services/registry/dj-registry and tools/dj-health, e.g.
#   cmake -S . -B build -G Ninja && ninja -C build dj-registry dj-health
# Run as root on Debian 12 with what scripts/deps.sh installs (podman, runc, debootstrap, ...).
set -euo pipefail
# shellcheck source=deploy/images/podman-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/podman-env.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
log() { printf '[%s] images: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'error: images: %s\n' "$*" >&2
  exit 1
}

build_dir='' rebuild_base=false only=''
while (($#)); do
  case $1 in
    --build-dir)
      (($# >= 2)) || die "--build-dir needs a folder"
      build_dir=$(realpath -m "$2")
      shift
      ;;
    --rebuild-base) rebuild_base=true ;;
    --only)
      (($# >= 2)) || die "--only needs an image name"
      only=$2
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done

repo=$(cd "$DJ_IMAGES_DIR/../.." && pwd)
readonly base_image=localhost/dangjian-base:12
# Bump when the base recipe below changes: older caches and images are then ignored.
readonly base_recipe=1
readonly base_cache=$DJ_IMAGE_CACHE/dangjian-base-12.r$base_recipe.tar
# Fixed ids, so files mounted from the host (keys, passwords) can be owned by the user that
# reads them inside the container. Kept in step with compose.sh and the Containerfiles.
readonly registry_uid=10001

for cmd in podman debootstrap; do
  command -v "$cmd" >/dev/null ||
    die "$cmd is missing: run scripts/deps.sh as root"
done
dj_podman_env

wanted() { [[ -z $only || $only == "$1" ]]; }

# --- the Debian mirror, from this machine's apt sources -------------------------------------

# Prints "URI SUITE COMPONENTS..." for every Debian bookworm* source this machine's apt uses
# (one-line sources.list format and deb822 .sources files). Sources signed by anything but
# Debian's archive keyring (third-party repositories) are left out; debootstrap checks the
# archive's signature anyway.
debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk '
      $1 != "deb" { next }
      {
        i = 2; opts = ""
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts " " $i; i++ }
                          opts = opts " " $i; i++ }
        if (opts ~ /signed-by=/ && opts !~ /debian-archive-keyring/) next
        if ($(i + 1) !~ /^bookworm(-updates|-security|-backports)?$/) next
        line = $i " " $(i + 1)
        for (j = i + 2; j <= NF; j++) line = line " " $j
        print line
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk '
      function flush(   n, u, s, us, ss) {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" &&
            (signed == "" || signed ~ /debian-archive-keyring/)) {
          n = split(uris, us, " "); split(suites, ss, " ")
          for (u = 1; u <= n; u++) for (s in ss)
            if (ss[s] ~ /^bookworm(-updates|-security|-backports)?$/) print us[u], ss[s], comps
        }
        types = uris = suites = comps = signed = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
        if (key == "types") types = $0
        else if (key == "uris") uris = $0
        else if (key == "suites") suites = $0
        else if (key == "components") comps = $0
        else if (key == "signed-by") signed = $0
        else if (key == "enabled") enabled = tolower($0)
      }
      END { flush() }' "$f"
  done
}

# --- base image -----------------------------------------------------------------------------

base_current() {
  [[ $(podman image inspect --format '{{ index .Config.Labels "org.dangjian.base-recipe" }}' \
    "$base_image" 2>/dev/null) == "$base_recipe" ]]
}

build_base() {
  if ! $rebuild_base && base_current; then
    log "base: $base_image already in podman (recipe $base_recipe)"
    return 0
  fi
  if ! $rebuild_base && [[ -s $base_cache ]]; then
    log "base: loading $base_cache"
    podman load --quiet --input "$base_cache" >/dev/null && base_current && return 0
    log "base: the cached copy is unusable; making it again"
  fi

  local sources mirror rootfs started=$SECONDS
  sources=$(debian_sources | awk '!seen[$0]++')
  mirror=$(awk '$2 == "bookworm" { print $1; exit }' <<<"$sources")
  [[ -n $mirror ]] ||
    die "no Debian bookworm source found in /etc/apt/sources.list or /etc/apt/sources.list.d/"
  rootfs=$(mktemp -d /tmp/dj-base-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the folder to remove is this one
  trap "rm -rf '$rootfs'" EXIT
  log "base: debootstrap --variant=minbase bookworm from the machine's Debian mirror (about a minute)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2
    die "debootstrap failed; full log in $rootfs.log"
  }
  rm -f "$rootfs.log"

  # The machine's Debian sources (every bookworm suite, security updates included), so image
  # builds install packages from the same archive the host uses.
  rm -f "$rootfs/etc/apt/sources.list"
  awk '{ printf "deb %s\n", $0 }' <<<"$sources" >"$rootfs/etc/apt/sources.list"
  # Settings of the host's apt that decide whether that archive is reachable and accepted
  # (a proxy, a snapshot archive whose Release files are past Valid-Until), read from apt itself.
  apt-config dump |
    grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date|Retries) ' \
      >"$rootfs/etc/apt/apt.conf.d/90dangjian-host" || true
  cat >"$rootfs/etc/apt/apt.conf.d/91dangjian-lean" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
CONF
  # Documentation, man pages and translations are never read inside a container.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90dangjian-lean" <<'CONF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
CONF
  rm -rf "$rootfs"/usr/share/doc/*/[!c]* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/*
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
  : >"$rootfs/etc/machine-id"

  tar --numeric-owner --xattrs -C "$rootfs" -c . |
    podman import --quiet \
      --change "LABEL org.dangjian.base-recipe=$base_recipe" \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$base_image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "base: made in $((SECONDS - started))s; saving to $base_cache"
  podman save --quiet --output "$base_cache.tmp" "$base_image"
  mv "$base_cache.tmp" "$base_cache"
}

# --- service images -------------------------------------------------------------------------

# Prints the Debian packages that hold the shared libraries binaries $@ load (ldd), sorted.
# One dpkg-query for all of them (each call reads dpkg's whole database). Debian 12 has merged
# /usr, so a library may be registered under /lib or /usr/lib: both spellings are asked.
runtime_packages() {
  local libs lib real candidates=() found
  mapfile -t libs < <(ldd "$@" |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u)
  ((${#libs[@]})) || die "ldd found no libraries in $*"
  for lib in "${libs[@]}"; do
    real=$(readlink -f "$lib")
    candidates+=("$lib" "$real" "${lib#/usr}" "/usr${lib#/usr}" "${real#/usr}" "/usr${real#/usr}")
  done
  found=$(dpkg-query -S "${candidates[@]}" 2>/dev/null | grep -v '^diversion ') || true
  local paths
  paths=$(sed -E 's/^[^ ]+ //' <<<"$found")
  for lib in "${libs[@]}"; do
    real=$(readlink -f "$lib")
    grep -qxF -e "${lib#/usr}" -e "/usr${lib#/usr}" -e "${real#/usr}" -e "/usr${real#/usr}" \
      <<<"$paths" || die "no Debian package holds $lib (a library built locally?)"
  done
  sed -E 's/^([^:]+)(:[a-z0-9]+)?: .*/\1/' <<<"$found" | sort -u
}

# Builds image $1 (tags $2...) from Containerfile $3 with context $4; the rest are podman args.
# Docker format: an OCI image cannot carry a HEALTHCHECK.
podman_build() {
  local name=$1 tags=$2 file=$3 context=$4
  shift 4
  local tag_args=() t old
  for t in $tags; do tag_args+=(--tag "$t"); done
  # The image the first tag names now: removed below once nothing names it any more.
  old=$(podman image inspect --format '{{.Id}}' "${tags%% *}" 2>/dev/null) || old=''
  local started=$SECONDS
  podman build --pull=never --network=host --layers --quiet --format docker --file "$file" "${tag_args[@]}" \
    "$@" "$context" >/dev/null || die "podman build of $name failed"
  log "$name: built in $((SECONDS - started))s ($(podman image inspect --format '{{.Size}}' \
    "${tags%% *}" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
  if [[ -n $old && $old != "$(podman image inspect --format '{{.Id}}' "${tags%% *}")" ]]; then
    podman image rm "$old" >/dev/null 2>&1 || true  # refused while tagged or in use: fine
  fi
}

build_registry() {
  [[ -n $build_dir ]] || die "--build-dir is needed to build the registry image"
  local registry=$build_dir/services/registry/dj-registry health=$build_dir/tools/dj-health
  local bin
  for bin in "$registry" "$health"; do
    [[ -x $bin ]] || die "$bin is missing: build it (ninja -C $build_dir dj-registry dj-health)"
  done
  local rev packages context
  rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null) || rev=unknown
  # Exactly the packages whose libraries the binaries load, worked out from the build on this
  # (Debian 12) machine: a new dependency is picked up without editing anything here.
  packages=$(runtime_packages "$registry" "$health" | tr '\n' ' ')
  log "registry: runtime packages: $packages"
  context=$(mktemp -d /tmp/dj-image-registry.XXXXXX)
  # Stripped copies: the debug info of a RelWithDebInfo build is most of its size.
  strip --strip-unneeded -o "$context/dj-registry" "$registry"
  strip --strip-unneeded -o "$context/dj-health" "$health"
  cp "$DJ_IMAGES_DIR/registry-healthcheck.sh" "$context/"
  podman_build registry "localhost/dangjian-registry:$rev localhost/dangjian-registry:latest" \
    "$DJ_IMAGES_DIR/registry.Containerfile" "$context" \
    --build-arg "RUNTIME_PACKAGES=$packages" --build-arg "UID=$registry_uid" \
    --label "org.dangjian.revision=$rev"
  rm -rf "$context"
}

build_postgres() {
  podman_build postgres localhost/dangjian-postgres:15 "$DJ_IMAGES_DIR/postgres.Containerfile" \
    "$DJ_IMAGES_DIR"
}

build_redis() {
  podman_build redis localhost/dangjian-redis:7 "$DJ_IMAGES_DIR/redis.Containerfile" \
    "$DJ_IMAGES_DIR"
}

case $only in '' | base | registry | postgres | redis) ;; *) die "--only: unknown image $only" ;; esac
build_base
wanted registry && build_registry
wanted postgres && build_postgres
wanted redis && build_redis
exit 0
