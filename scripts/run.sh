#!/usr/bin/env bash
# `make run`: a working skillgate on one machine, no telecom account needed.
#   - a private PostgreSQL under ./var/pg (port $SG_PG_PORT, default 55499)
#   - the schema migrated, a sample household (code DEMO-01)
#   - the SMSC simulator (node-smpp) on 127.0.0.1:12775, control port 12776
#   - skillgated against both, logging to ./var/skillgated.log
#   - then `skillctl phone` in this terminal (PHONE=0912345678 by default)
# Ctrl-D leaves the phone; everything started here is stopped then.
# RUN_DETACH=1 starts the services and returns (for scripts and tests).
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=$PWD/var
PGPORT=${SG_PG_PORT:-55499}
SMPP_PORT=${SG_SMPP_PORT:-12775}
CTRL_PORT=${SG_CTRL_PORT:-12776}
HTTP_PORT=${SG_HTTP_PORT:-8080}
PHONE=${PHONE:-0912345678}
mkdir -p "$VAR"
chmod 755 "$VAR"

[ -d node_modules ] || npm ci --no-audit --no-fund --silent

scripts/pg.sh start "$VAR/pg" "$PGPORT"
psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -tAc \
	"SELECT 1 FROM pg_database WHERE datname = 'skillgate'" | grep -q 1 ||
	psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE skillgate"

conf=$VAR/skillgate.conf
sed -e "s|^conninfo = .*|conninfo = host=127.0.0.1 port=$PGPORT dbname=skillgate user=postgres|" \
	-e "s|^port = 2775$|port = $SMPP_PORT|" \
	-e "s|^listen = .*|listen = 127.0.0.1:$HTTP_PORT|" \
	-e "s|^quiet_hours = .*|quiet_hours = |" \
	config/skillgate.conf >"$conf"
chmod 600 "$conf"
bin/skillctl -c "$conf" -s sql migrate >/dev/null
psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d skillgate -c \
	"INSERT INTO households (code, commune_code, village) VALUES ('DEMO-01', '00001', 'Tổ dân phố 1') ON CONFLICT DO NOTHING"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	scripts/pg.sh stop "$VAR/pg" || true
}

node tests/sim/smsc-cli.js --port "$SMPP_PORT" --control "$CTRL_PORT" --receipts >"$VAR/smsc.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$VAR/smsc.log" && break; sleep 0.1; done
bin/skillgated -f -c "$conf" 2>"$VAR/skillgated.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "bound to SMSC" "$VAR/skillgated.log" && break; sleep 0.1; done

echo "skillgate is running: PostgreSQL :$PGPORT, SMSC simulator :$SMPP_PORT, HTTP http://127.0.0.1:$HTTP_PORT"
echo "logs: var/skillgated.log, var/smsc.log; config: var/skillgate.conf"
if [ "${RUN_DETACH:-0}" = 1 ]; then
	printf '%s\n' "${pids[@]}" >"$VAR/run.pids"
	exit 0
fi
trap cleanup EXIT
echo "Try: HOC 1 (or QUIZ 1), then answer A-D; KQ / STATUS; HO DEMO-01; EN / VI; *8079# for USSD."
bin/skillctl -c "$conf" phone "$PHONE" --sim "127.0.0.1:$CTRL_PORT"
