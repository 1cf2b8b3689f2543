#!/usr/bin/env bash
# Installs the Debian packages skillgate needs to build, test and run. As root
# it installs what is missing; otherwise it prints the exact apt-get line.
set -u
PKGS="build-essential pkg-config clang libclang-rt-14-dev clang-format
libevent-dev libssl-dev libpq-dev libsmpp34-dev libjansson-dev libinih-dev libcmocka-dev
postgresql-15 postgresql-client-15 nodejs npm chromium tmux python3 openssl"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nodejs may come from elsewhere (e.g. NodeSource): a working node + npm is enough
if command -v node >/dev/null && command -v npm >/dev/null; then
	missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' ')
fi
missing=$(echo $missing)
if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ]; then
	echo "deps: installing $missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null ||
		{ echo "deps: apt-get install failed" >&2; exit 1; }
else
	echo "deps: missing Debian packages. Run:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y $missing" >&2
	exit 1
fi
