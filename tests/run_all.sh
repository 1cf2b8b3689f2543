#!/usr/bin/env bash
# `make test`: everything, in order, with one summary line at the end.
#   1. build (-Werror) and cmocka unit tests
#   2. integration tests: real PostgreSQL, node-smpp SMSC simulator, real daemon
#   3. the same unit and integration tests built with -fsanitize=address,undefined
#      (LeakSanitizer on: a leak fails the daemon's exit status and so the test)
#   4. every libFuzzer target for a few seconds (clang)
set -u
cd "$(dirname "$0")/.."
total_pass=0 total_fail=0
stage() { # name, command...
	local name=$1; shift
	echo "==== $name"
	local log; log=$(mktemp)
	"$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	local line; line=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	local p=0 f=0
	if [ -n "$line" ]; then
		p=$(echo "$line" | sed 's/.*: \([0-9]*\) passed.*/\1/')
		f=$(echo "$line" | sed 's/.* \([0-9]*\) failed.*/\1/')
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "$name: stage failed (exit $rc)"; fi
	total_pass=$((total_pass + p)) total_fail=$((total_fail + f))
	rm -f "$log"
}
[ -d node_modules ] || npm ci --no-audit --no-fund
stage build make -j2 all unit-bins bench-sim
stage unit bash tests/run_unit.sh build
stage integration bash tests/run_integration.sh
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
stage build-asan make -j2 BUILD=build-asan BINDIR=build-asan/bin OPT=-O1 SAN="$SAN" all unit-bins
stage unit-asan bash tests/run_unit.sh build-asan
SG_BIN=build-asan/bin stage integration-asan bash tests/run_integration.sh
if command -v clang >/dev/null; then
	stage fuzz make fuzz-smoke
fi
echo
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
