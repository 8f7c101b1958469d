# shellcheck shell=bash
# Sourced by deploy/images/*.sh and tests/deploy/containers_test.sh: points podman at the
# project's containers.conf (rendered from containers.conf.in into the cache folder) and defines
# where cached images live. Sets DJ_IMAGES_DIR, DJ_IMAGE_CACHE and exports CONTAINERS_CONF.

DJ_IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Outside the repository: a `podman save` of the base image (about 90 MB) and the
# rendered containers.conf. DJ_IMAGE_CACHE moves it.
DJ_IMAGE_CACHE=${DJ_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dangjian}

dj_podman_env() {
  mkdir -p "$DJ_IMAGE_CACHE"
  local nofile conf
  nofile=$(ulimit -Hn)
  [[ $nofile == unlimited ]] && nofile=1048576
  conf=$DJ_IMAGE_CACHE/containers.conf
  sed "s/@NOFILE@/$nofile/g" "$DJ_IMAGES_DIR/containers.conf.in" >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  export CONTAINERS_CONF=$conf
}
