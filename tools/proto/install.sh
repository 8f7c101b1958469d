#!/usr/bin/env bash
# Installs the proto tooling pinned in tools/proto/package.json (buf, from the npm package
# @bufbuild/buf) into tools/proto/node_modules, so tools/proto/node_modules/.bin/buf runs it.
# `npm ci` installs exactly what package-lock.json holds and checks every package against its
# integrity hash there; the lock file names no registry, so npm uses the one it is configured
# with. Install scripts are skipped: buf's only checks for the binary that the platform package
# (an optional dependency) already brings, and the version is checked here instead. Quick when
# the pinned version is already installed. Needs node and npm (scripts/deps.sh installs them).
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
buf=$dir/node_modules/.bin/buf
for cmd in node npm; do
  command -v "$cmd" >/dev/null || { echo "tools/proto: $cmd is missing" >&2; exit 1; }
done
want=$(node -p 'require(process.argv[1]).devDependencies["@bufbuild/buf"]' "$dir/package.json")

if [[ $("$buf" --version 2>/dev/null || true) == "$want" ]]; then
  exit 0
fi
echo "tools/proto: installing buf $want with npm ci"
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
have=$("$buf" --version 2>&1 || true)
if [[ $have != "$want" ]]; then
  echo "tools/proto: buf --version says '$have', not the pinned $want" >&2
  exit 1
fi
