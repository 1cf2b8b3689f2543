#!/usr/bin/env bash
# The MO path's statements of a captured bench run, replayed on a private
# PostgreSQL with this tree's migrations (tests/bench/sqlreplay.js says how to
# capture). Prints the backend's CPU per function and per MO, once per pass,
# each pass on a new database.
#   bash tests/bench/sqlreplay.sh CAPTURE.log [passes]
set -euo pipefail
cd "$(dirname "$0")/../.."
cap=${1:?usage: sqlreplay.sh CAPTURE.log [passes]}
passes=${2:-3}
bin=${SG_BIN:-bin}
dir=$(mktemp -d /tmp/sgreplay.XXXXXX)
chmod 755 "$dir"
port=$(scripts/pg.sh port)
trap 'scripts/pg.sh stop "$dir/pg" >/dev/null 2>&1; rm -rf "$dir"' EXIT
conf="jit = off"
# REPLAY_PGSS=1: also the statements (nested ones too) that took the most time
[ -n "${REPLAY_PGSS:-}" ] && conf="$conf"$'\nshared_preload_libraries = \'pg_stat_statements\'\npg_stat_statements.track = all\npg_stat_statements.track_planning = on'
PG_FSYNC=off PG_EXTRA_CONF="$conf" scripts/pg.sh start "$dir/pg" "$port"
for i in $(seq 1 "$passes"); do
	psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q -c "DROP DATABASE IF EXISTS replay WITH (FORCE)" -c "CREATE DATABASE replay ${REPLAY_DB_OPTS:-}"
	printf '[database]\nconninfo = host=127.0.0.1 port=%s dbname=replay user=postgres\n' "$port" >"$dir/migrate.conf"
	"$bin/skillctl" -c "$dir/migrate.conf" -s sql migrate >/dev/null
	echo "pass $i:"
	[ -n "${REPLAY_PGSS:-}" ] && psql -h 127.0.0.1 -p "$port" -U postgres -d replay -X -q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
	node tests/bench/sqlreplay.js "$cap" "postgresql://postgres@127.0.0.1:$port/replay"
	[ -n "${REPLAY_PGSS:-}" ] && psql -h 127.0.0.1 -p "$port" -U postgres -d replay -X -q -c "SELECT round(total_exec_time) AS ms, round(total_plan_time) AS plan_ms, calls, plans, rows, round((total_exec_time/greatest(calls,1))::numeric,3) AS ms_per_call, left(regexp_replace(query, '\s+', ' ', 'g'), 120) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20"
done
