#!/usr/bin/env bash
# A private PostgreSQL cluster for tests, benches and `make run`: no system
# service, any directory, any port, stopped by the caller.
#   scripts/pg.sh start DIR PORT   initdb (if needed) and start; prints nothing on success
#   scripts/pg.sh stop DIR         fast shutdown
#   scripts/pg.sh restart DIR      stop then start on the same port
#   scripts/pg.sh port             prints a free TCP port on 127.0.0.1 (for start)
# PG_EXTRA_CONF: lines appended to postgresql.conf at initdb (e.g. for profiling).
# PostgreSQL refuses to run as root: as root the cluster runs as user
# "postgres" (created by Debian's postgresql package).
set -euo pipefail

PGBIN=${PGBIN:-}
if [ -z "$PGBIN" ]; then
	for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
		[ -x "$d/pg_ctl" ] && { PGBIN=$d; break; }
	done
fi
[ -n "$PGBIN" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2; exit 1; }

as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

cmd=${1:?usage: pg.sh start|stop|restart DIR [PORT] | port}
if [ "$cmd" = port ]; then
	node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
	exit
fi
dir=${2:?DIR}
case "$cmd" in
start)
	port=${3:?PORT}
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; exit 1; }
		cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
synchronous_commit = on
fsync = ${PG_FSYNC:-on}
max_connections = 200
shared_buffers = 256MB
${PG_EXTRA_CONF:-}
CONF
	fi
	echo "$port" >"$dir/port"
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null ||
		{ tail -20 "$dir/server.log" >&2; exit 1; }
	;;
stop)
	[ -f "$dir/data/postmaster.pid" ] || exit 0
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
	;;
restart)
	"$0" stop "$dir"
	"$0" start "$dir" "$(cat "$dir/port")"
	;;
*)
	echo "pg.sh: unknown command $cmd" >&2
	exit 2
	;;
esac
