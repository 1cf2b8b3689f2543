#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/bin for SECONDS each, from its seed
# corpus in tests/fuzz/corpus/<name>/ (copied, so runs never dirty the tree).
# Prints "fuzz: N passed, M failed" (a target passes when it finds nothing).
set -u
secs=${1:-10}
pass=0 fail=0
for bin in build-fuzz/bin/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin"); name=${name#fuzz_}
	work=$(mktemp -d)
	[ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
	log=$(mktemp)
	if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$work" >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		echo "ok   fuzz_$name (${execs:-?} executions in ${secs}s)"
		pass=$((pass + 1))
	else
		echo "FAIL fuzz_$name"; tail -40 "$log"
		fail=$((fail + 1))
	fi
	rm -rf "$work" "$log"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
