#!/usr/bin/env bash
# tests/demo-load.sh: loads the demo schema into the cluster that tests/cluster.sh runs:
# sql/directory.sql and sql/two_phase.sql into the s0 primary, sql/demo.sql into every primary (s0, s1 and the
# spare s2). Both files are idempotent, so loading again is harmless.
#
#   tests/demo-load.sh [--base-port N]   (env CLUSTER_BASE_PORT; default 55432)
set -euo pipefail

usage() {
	echo "usage: $0 [--base-port N]   (env CLUSTER_BASE_PORT, default 55432)"
}

base=${CLUSTER_BASE_PORT:-55432}
while [ $# -gt 0 ]; do
	case $1 in
	--base-port)
		[ $# -ge 2 ] || {
			usage >&2
			exit 2
		}
		base=$2
		shift
		;;
	--base-port=*) base=${1#*=} ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done
if ! [[ $base =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65530 ]; then
	echo "demo-load.sh: bad base port '$base'" >&2
	exit 2
fi

SQL=$(cd "$(dirname "${BASH_SOURCE[0]}")/../sql" && pwd -P)
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGPASSFILE || true
export PGPASSWORD=postgres
export PGOPTIONS="-c client_min_messages=warning"
if [ -x /usr/lib/postgresql/15/bin/psql ]; then
	PSQL=/usr/lib/postgresql/15/bin/psql
else
	PSQL=psql
fi

load() { # load PORT FILE
	if ! "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d app -f "$2" >/dev/null; then
		echo "demo-load.sh: loading $(basename "$2") into 127.0.0.1:$1 failed" >&2
		exit 1
	fi
}

load "$base" "$SQL/directory.sql"
load "$base" "$SQL/two_phase.sql"
for port in "$base" $((base + 3)) $((base + 4)); do
	load "$port" "$SQL/demo.sql"
done
echo "demo schema loaded: directory on 127.0.0.1:$base, demo tables on ports $base $((base + 3)) $((base + 4))"
