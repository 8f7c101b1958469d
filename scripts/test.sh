#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/deps.sh), builds everything in build/
# (RelWithDebInfo) and runs all tests there, then builds build-asan/ with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs the same tests again. Prints each phase's wall time; exits
# non-zero on the first failure. As root on Debian 12: bash scripts/test.sh
# DJ_JOBS sets the build's parallelism (ninja's default otherwise).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DJ_ROOT"

phase_names=() phase_seconds=()
report() {
  local rc=$? i
  echo
  echo "phase wall times:"
  for i in "${!phase_names[@]}"; do
    printf '  %-44s %4d s\n' "${phase_names[$i]}" "${phase_seconds[$i]}"
  done
  if ((rc == 0)); then echo "all tests passed"; else echo "FAILED (exit $rc)"; fi
}
trap report EXIT

# Runs "$@" as phase $1 (the rest is the command), recording its wall time even when it fails.
phase() {
  local name=$1 start=$SECONDS rc=0
  shift
  dj_log "== $name"
  "$@" || rc=$?
  phase_names+=("$name")
  phase_seconds+=($((SECONDS - start)))
  ((rc == 0)) || dj_die "$name failed"
}

# ctest: three at a time on two cores (the integration tests spend much of their time waiting on
# PostgreSQL), no reruns: a failure fails.
run_ctest() { ctest --test-dir "$1" -j3 --output-on-failure --no-tests=error; }

phase "dependencies (scripts/deps.sh)" bash scripts/deps.sh
phase "build build/ (RelWithDebInfo)" dj_build build
phase "tests in build/" run_ctest build

# -O1 -g1 (line tables only) instead of -O2 -g: the sanitizer build compiles about 45% faster,
# which is most of this script's time on two cores, and its reports still name file and line.
phase "build build-asan/ (ASan + UBSan)" dj_build build-asan -DDJ_SANITIZE=ON \
  -DDJ_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
# LeakSanitizer stays on: a leak in our code fails the test. Tried with detect_leaks=1, gRPC's
# global state is not reported (its tests, servers and clients pass clean). The one report was
# libpq's: when the server kills a connection in the middle of a query (the fault tests of
# common/sql do that on purpose), libpq loses the PGresult it was building inside PQexec; nothing
# of ours holds it. Only allocations made by libpq itself are suppressed, so a leak in our code
# (or of a pqxx object we own) is still reported.
lsan_suppressions=$DJ_ROOT/build-asan/lsan.supp
mkdir -p "$DJ_ROOT/build-asan"
printf '%s\n' '# Written by scripts/test.sh; see the comment there.' 'leak:libpq.so' \
  >"$lsan_suppressions"
export LSAN_OPTIONS=suppressions=$lsan_suppressions:print_suppressions=0
export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1
# halt_on_error makes UBSan findings fatal (the build also passes -fno-sanitize-recover=undefined).
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
phase "tests in build-asan/" run_ctest build-asan
