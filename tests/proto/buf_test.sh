#!/usr/bin/env bash
# buf's checks of the public API in proto/, with the rules of buf.yaml (ctest: proto_lint_test,
# proto_breaking_test):
#   lint      `buf lint`;
#   breaking  `buf breaking` against proto/ as of the previous commit (HEAD~1; DJ_PROTO_AGAINST=REF
#             compares with another commit, e.g. main for a branch of several commits): nothing
#             released may be removed, renamed or renumbered.
# Each mode first proves that it catches a mistake planted in a scratch copy (a badly named
# message; a renumbered field), so a configuration that checks nothing cannot pass.
# The previous commit is read with `git archive`, which works in a clone and in a worktree alike.
# When it is not there (a shallow clone: clone with --depth 2 or more) or the tree is not a git
# checkout, `breaking` says so and exits 77, which ctest reports as SKIPPED.
#
#   bash tests/proto/buf_test.sh lint|breaking REPO_ROOT
# buf comes from tools/proto/node_modules (tools/proto/install.sh; scripts/deps.sh runs it).
set -euo pipefail

readonly skip_code=77

fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}

skip() {
  printf 'SKIPPED: %s\n' "$*"
  exit "$skip_code"
}

(($# == 2)) || fail "usage: $0 lint|breaking REPO_ROOT"
mode=$1
root=$(cd "$2" && pwd)
buf=$root/tools/proto/node_modules/.bin/buf
[[ -x $buf ]] || fail "buf is missing ($buf): run scripts/deps.sh (or tools/proto/install.sh)"
echo "buf $("$buf" --version)"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A copy of the module (buf.yaml and proto/) to plant mistakes in.
copy_module() {
  mkdir -p "$1"
  cp "$root/buf.yaml" "$1/"
  cp -r "$root/proto" "$1/"
}

# The first .proto under $1/proto, in sorted order, that has a message field (a lower_snake_case
# name, so enum values, which are UPPER_SNAKE_CASE, are not taken).
readonly field_line='^  +[A-Za-z][A-Za-z0-9_.]* [a-z][a-z0-9_]* = [0-9]+;$'
first_file_with_field() {
  local f
  while IFS= read -r f; do
    if grep -Eq "$field_line" "$f"; then
      echo "$f"
      return 0
    fi
  done < <(find "$1/proto" -name '*.proto' | sort)
  return 1
}

case $mode in
  lint)
    echo "== planted: a message that is not PascalCase must fail buf lint"
    copy_module "$scratch/planted"
    target=$(find "$scratch/planted/proto" -name '*.proto' | sort | head -n 1)
    printf '\n// Planted by tests/proto/buf_test.sh.\nmessage planted_lint_error {}\n' >>"$target"
    if out=$(cd "$scratch/planted" && "$buf" lint 2>&1); then
      fail "buf lint passed a message named planted_lint_error: buf.yaml checks too little"
    fi
    grep -q planted_lint_error <<<"$out" || fail "buf lint failed, but not on the planted message: $out"
    echo "ok: caught ($(head -n 1 <<<"$out"))"

    echo "== buf lint proto/"
    (cd "$root" && "$buf" lint) || fail "buf lint (rules and exceptions: buf.yaml)"
    echo "ok: proto/ passes buf lint"
    ;;

  breaking)
    echo "== planted: a renumbered field must fail buf breaking"
    copy_module "$scratch/base"
    copy_module "$scratch/planted"
    target=$(first_file_with_field "$scratch/planted") || fail "no message field under proto/"
    # The first field's number + 1000 (numbers 19000-19999 are reserved by protobuf; ours are low).
    awk -v re="$field_line" '
      !done && $0 ~ re { n = $NF; sub(/;$/, "", n); sub(/= [0-9]+;$/, "= " (n + 1000) ";"); done = 1 }
      { print }' "$target" >"$target.new"
    mv "$target.new" "$target"
    cmp -s "$target" "$scratch/base/proto/${target#"$scratch/planted/proto/"}" &&
      fail "could not plant a renumbered field in $target"
    if out=$(cd "$scratch/planted" && "$buf" breaking --against "$scratch/base/proto" 2>&1); then
      fail "buf breaking passed a renumbered field: buf.yaml checks too little"
    fi
    echo "ok: caught ($(head -n 1 <<<"$out"))"

    against=${DJ_PROTO_AGAINST:-HEAD~1}
    echo "== buf breaking proto/ against $against"
    # (A tree unpacked inside some other checkout is not one either.)
    [[ $(git -C "$root" rev-parse --show-toplevel 2>/dev/null) == "$(cd "$root" && pwd -P)" ]] ||
      skip "$root is not a git checkout, so there is no previous commit to compare proto/ with"
    if ! commit=$(git -C "$root" rev-parse --verify -q "$against^{commit}"); then
      if [[ $(git -C "$root" rev-parse --is-shallow-repository) == true ]]; then
        skip "$against is not in this shallow clone; clone with --depth 2 or more to compare proto/ with it"
      fi
      skip "$against does not exist (the first commit?): nothing to compare proto/ with"
    fi
    mkdir "$scratch/against"
    git -C "$root" archive "$commit" proto | tar -x -C "$scratch/against" ||
      skip "$against ($commit) has no proto/: nothing released to compare with"
    (cd "$root" && "$buf" breaking --against "$scratch/against/proto") ||
      fail "buf breaking: proto/ breaks $against (${commit:0:12}); a released field, message or RPC must not be removed, renamed or renumbered"
    echo "ok: proto/ is compatible with $against (${commit:0:12})"
    ;;

  *) fail "unknown mode $mode (lint or breaking)" ;;
esac
