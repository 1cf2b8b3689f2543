#!/usr/bin/env bash
# make bench: the §7 figures, measured the same way every time (issue 10).
# A private PostgreSQL (synchronous_commit=on, fsync on) in a temp dir on a free
# port, then tests/bench/bench.js: simulator processes, skillgated, Kannel.
# Prints one line per figure (median of runs, min, max, unit, §7 target) and
# writes bench/results/<timestamp>-<sha>.json. Never fails on a number.
#   BENCH_QUICK=1      short runs (about 4 minutes)
#   BENCH_RUNS=N       runs per figure (default 3)
#   BENCH_ONLY=a,b     scenarios: mo,mt,rate,sessions,reports,kannel (default all)
#   BENCH_SIMS=N       simulator processes / links for MO and MT (default 2)
#   BENCH_SIM=c|node   the simulator: build/bench/smscsim (make bench-sim; the default when built)
#                      or tests/bench/simproc.js (Node, hosting tests/sim/smsc.js)
#   BENCH_NO_KANNEL=1  skip the Kannel reference
#   BENCH_NO_FOLD=1    skip the MO runs with replies folded to GSM-7 (text = fold)
#   BENCH_WINDOW=N     SMPP window of each link (default 100)
#   BENCH_POOL=N       [database] pool of the daemons (default 4)
#   SG_BIN=DIR         binaries (default bin/)
#   BENCH_LAT_RATE=N   offered MO/s of the latency figure (default 1000, the §7 load)
#   BENCH_LAT_ONLY=1   mo: the latency figure only (no throughput or fold runs)
#   BENCH_PG_CONF=S    extra postgresql.conf lines (experiments)
#   BENCH_PG_LOG=F     copy PostgreSQL's server log to F at the end
#   BENCH_COLD_WAL=1   start with no WAL segments allocated ahead (a new cluster)
#   BENCH_PGSS=1       profile PostgreSQL: print the statements that took the most time
#   BENCH_HTTP=H:P     give the daemons an HTTP listener (/metrics) at H:P
#   BENCH_DEBUG=1      when a run's backlog takes over 15 s to drain, print outbox states (and /metrics)
#   BENCH_EXPLAIN=F    log the plan of every statement over BENCH_EXPLAIN_MS (20) ms (auto_explain, nested ones too) and
#                      copy PostgreSQL's log to F at the end
set -u
cd "$(dirname "$0")/../.."
bin=${SG_BIN:-bin}
[ -x "$bin/skillgated" ] && [ -x "$bin/skillctl" ] || { echo "bench: build first (make all)" >&2; exit 1; }
if ! command -v bearerbox >/dev/null 2>&1 && [ -z "${BENCH_NO_KANNEL:-}" ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "bench: installing kannel (Debian) for the reference figures" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q kannel >/dev/null 2>&1 ||
			echo "bench: could not install kannel; Kannel ratios will be n/a" >&2
	else
		echo "bench: kannel missing (sudo apt-get install kannel); Kannel ratios will be n/a" >&2
	fi
fi
dir=$(mktemp -d /tmp/sgbench.XXXXXX)
chmod 755 "$dir"
port=$(scripts/pg.sh port)
cleanup() {
	scripts/pg.sh stop "$dir/pg" >/dev/null 2>&1
	[ -n "${BENCH_EXPLAIN:-}" ] && cp "$dir/pg/server.log" "$BENCH_EXPLAIN"
	[ -n "${BENCH_PG_LOG:-}" ] && cp "$dir/pg/server.log" "$BENCH_PG_LOG"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Checkpoints spaced as a write-heavy production server would have them (the
# defaults, 1 GB of WAL, checkpoint every ~40 s of MO load); durability is
# unchanged: synchronous_commit and fsync stay on. min_wal_size keeps the
# wal_segs segments put in place below (2 GB) for reuse at each checkpoint.
# backend_flush_after: each backend asks the kernel to write back what it wrote
# every 256 kB, as the checkpointer and bgwriter do by default, so the growing
# tables' pages do not pile up dirty (700 MB) and go out in bursts that a WAL
# flush waits behind (README, Benchmarks).
wal_segs=128
export PG_EXTRA_CONF="max_wal_size = 4GB
checkpoint_timeout = 15min
min_wal_size = $((wal_segs * 16))MB
backend_flush_after = 256kB"
if [ -n "${BENCH_PGSS:-}" ]; then
	export PG_EXTRA_CONF="$PG_EXTRA_CONF"$'\nshared_preload_libraries = \'pg_stat_statements\'\npg_stat_statements.track = all'
fi
if [ -n "${BENCH_EXPLAIN:-}" ]; then
	export PG_EXTRA_CONF="$PG_EXTRA_CONF"$'\nshared_preload_libraries = \'auto_explain\'\nauto_explain.log_min_duration = '"${BENCH_EXPLAIN_MS:-20}"$'\nauto_explain.log_nested_statements = on\nauto_explain.log_analyze = on\nauto_explain.log_timing = on'
fi
if [ -n "${BENCH_PG_CONF:-}" ]; then
	export PG_EXTRA_CONF="${PG_EXTRA_CONF:-}"$'\n'"$BENCH_PG_CONF"
fi
export BENCH_PG_SETTINGS=$PG_EXTRA_CONF # printed in the bench's header and JSON
PG_FSYNC=on scripts/pg.sh start "$dir/pg" "$port" || { echo "bench: PostgreSQL did not start" >&2; exit 0; }
# The WAL segments of a server that has been running: its checkpoints recycle
# old segments as the next ones, so commits write into files already there. A
# new cluster has none, and the backend that fills its last segment creates the
# next one, writing 16 MB of zeros and flushing them while every commit waits
# (README, Benchmarks). wal_segs segments (min_wal_size above) written once and
# recycled by a checkpoint; BENCH_WAL_AHEAD tells bench.js how many.
if [ -z "${BENCH_COLD_WAL:-}" ]; then
	psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q \
		-c "DO \$\$ BEGIN FOR i IN 1..$wal_segs LOOP PERFORM txid_current(); COMMIT; PERFORM pg_switch_wal(); END LOOP; END \$\$" \
		-c "CHECKPOINT" >/dev/null && export BENCH_WAL_AHEAD=$wal_segs ||
		echo "bench: could not allocate WAL segments ahead; the figures include their creation" >&2
fi
export SG_PG_PORT=$port SG_PG_DIR=$dir/pg BENCH_DIR=$dir
node tests/bench/bench.js
rc=$?
if [ -n "${BENCH_PGSS:-}" ]; then
	psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT round(total_exec_time) AS ms, calls, rows, round(total_exec_time/greatest(rows,1)*1000) AS us_per_row, round(mean_exec_time::numeric,2) AS mean_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25" 2>&1 || true
	psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q -c "SELECT sum(jit_functions) AS jit_functions, round(sum(jit_generation_time + jit_inlining_time + jit_optimization_time + jit_emission_time)) AS jit_ms FROM pg_stat_statements" 2>&1 || true
	psql -h 127.0.0.1 -p "$port" -U postgres -d bench_sg -X -q -c "SELECT count(*) AS receipts_parked, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM mt_parts p WHERE p.link = e.link AND p.smsc_id = e.smsc_id)) AS matchable FROM dlr_early e" 2>&1 || true
	psql -h 127.0.0.1 -p "$port" -U postgres -d bench_sg -X -q -c "SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) AS heap, pg_size_pretty(pg_indexes_size(c.oid)) AS indexes, s.n_tup_ins AS inserts, s.n_tup_upd AS updates, s.n_tup_hot_upd AS hot FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname IN ('mt_messages', 'mo_messages', 'subscribers', 'proficiency') ORDER BY 1" 2>&1 || true
	psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q -c "SELECT w.wal_records, w.wal_fpi, pg_size_pretty(w.wal_bytes) AS wal, c.checkpoints_timed + c.checkpoints_req AS checkpoints, c.buffers_backend FROM pg_stat_wal w, pg_stat_bgwriter c" 2>&1 || true
fi
[ $rc -eq 0 ] || echo "bench: the bench itself failed (exit $rc); figures above are partial" >&2
exit 0
