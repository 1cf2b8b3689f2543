#!/usr/bin/env bash
# Integration tests: a private PostgreSQL cluster for the whole run (temp dir,
# free port, stopped at exit), then every tests/integration/*.test.js under
# node's test runner against the binaries in SG_BIN (default bin/).
# SG_TESTS picks files, SG_TEST_PATTERN picks tests by name (a regular expression).
# Prints "integration: N passed, M failed".
set -u
cd "$(dirname "$0")/.."
pgdir=$(mktemp -d /tmp/sgpg.XXXXXX)
chmod 755 "$pgdir"
port=$(scripts/pg.sh port)
cleanup() { scripts/pg.sh stop "$pgdir" >/dev/null 2>&1; rm -rf "$pgdir"; }
trap cleanup EXIT
scripts/pg.sh start "$pgdir" "$port" || { echo "integration: 0 passed, 1 failed (PostgreSQL did not start)"; exit 1; }
export SG_PG_PORT=$port SG_PG_DIR=$pgdir
files=${SG_TESTS:-$(ls tests/integration/*.test.js 2>/dev/null)}
[ -n "$files" ] || { echo "integration: 0 passed, 0 failed"; exit 0; }
out=$(mktemp)
node --test --test-concurrency=1 --test-timeout=${SG_TEST_TIMEOUT_MS:-300000} --test-reporter=tap \
	${SG_TEST_PATTERN:+--test-name-pattern="$SG_TEST_PATTERN"} $files 2>&1 | tee "$out" | grep --line-buffered -E '^(ok|not ok) [0-9]+ - |^# (pass|fail|tests) '
rc=${PIPESTATUS[0]}
pass=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$out" | tail -1)
fail=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$out" | tail -1)
pass=${pass:-0} fail=${fail:-0}
if [ "$fail" -ne 0 ]; then
	echo "---- failures ----"
	grep -A40 '^not ok\|^    not ok' "$out" | head -200
fi
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
rm -f "$out"
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
