#!/usr/bin/env bash
# make soak: skillgated at a moderate load for an hour (SOAK_SECS, default 3600),
# RSS sampled every 10 s, then "rss flat" or "rss NOT flat". Same set-up as
# tests/bench/run.sh (private PostgreSQL, simulator process, the real daemon).
#   SOAK_SECS=N   duration; SOAK_RATE=N MO/s offered (default 200; each reply
#                 also carries a receipt) plus a broadcast of SOAK_RATE/2 MT/s
#   SG_BIN=DIR    binaries (default bin/)
# Writes bench/results/soak-<timestamp>-<sha>.json. Exit 0 unless the set-up fails.
set -u
cd "$(dirname "$0")/../.."
bin=${SG_BIN:-bin}
[ -x "$bin/skillgated" ] && [ -x "$bin/skillctl" ] || { echo "soak: build first (make all)" >&2; exit 1; }
dir=$(mktemp -d /tmp/sgsoak.XXXXXX)
chmod 755 "$dir"
port=$(scripts/pg.sh port)
cleanup() { scripts/pg.sh stop "$dir/pg" >/dev/null 2>&1; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
PG_FSYNC=on scripts/pg.sh start "$dir/pg" "$port" || { echo "soak: PostgreSQL did not start" >&2; exit 1; }
export SG_PG_PORT=$port SG_PG_DIR=$dir/pg BENCH_DIR=$dir
node tests/bench/soak.js
