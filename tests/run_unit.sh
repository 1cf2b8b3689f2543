#!/usr/bin/env bash
# Runs every cmocka unit test binary in BUILD/tests; prints "unit: N passed, M failed".
set -u
build=${1:-build}
pass=0 fail=0
for t in "$build"/tests/test_*; do
	[ -x "$t" ] || continue
	out=$("$t" 2>&1)
	rc=$?
	p=$(printf '%s\n' "$out" | sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(printf '%s\n' "$out" | sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	p=${p:-0} f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed, sanitizer report, ...
	pass=$((pass + p)) fail=$((fail + f))
	if [ "$f" -ne 0 ]; then
		echo "FAIL $(basename "$t")"
		printf '%s\n' "$out" | tail -40
	else
		echo "ok   $(basename "$t") ($p)"
	fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
