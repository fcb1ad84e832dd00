#!/usr/bin/env bash
# tests/cluster.sh: the local PostgreSQL 15 topology that shardgate's integration tests,
# benchmarks and demo run against.
#
#   tests/cluster.sh start|stop|status|destroy [--base-port N]
#
# The base port comes from --base-port, else $CLUSTER_BASE_PORT, else 55432. Topologies on
# different base ports are independent and may run side by side.
#
# Topology (everything on 127.0.0.1 only):
#
#   node  role     port     what
#   s0p   primary  BASE     primary of shard s0
#   s0r1  replica  BASE+1   streaming replica of s0p (physical slot s0r1, application_name s0r1)
#   s0r2  replica  BASE+2   streaming replica of s0p (physical slot s0r2, application_name s0r2)
#   s1p   primary  BASE+3   primary of shard s1
#   s2p   primary  BASE+4   primary of shard s2 (spare, for rebalance tests)
#
# Layout: <repo>/.cluster/<BASE>/<node>/ holds data/ (PGDATA), postgres.log (the server log),
# initdb.log or basebackup.log, and the node's unix socket (unix_socket_directories).
# Connections: superuser postgres / password postgres over TCP (scram-sha-256), or trust
# over the node's unix socket. Database app exists on every node. Test roles on every
# primary (and, by streaming, on the replicas): md5user/md5pass (md5 verifier, pg_hba md5),
# pwuser/pwpass (pg_hba password), trustuser (pg_hba trust). The cluster is initialised
# with locale C and encoding UTF8, so text sorts bytewise on every node.
#
# Running as root: initdb refuses root, so the data belongs to the `postgres` system user
# and every PostgreSQL program runs through `runuser -u postgres --`. When that user cannot
# traverse the repository (e.g. it lives under /root), or when the socket path inside the
# repository would be too long for a unix socket, the data lives in
# /tmp/shardgate-cluster-<BASE> and .cluster/<BASE> is a symlink to it; `destroy` removes
# both. As a normal user, everything runs as that user.
#
# start   creates what is missing, starts what is stopped, waits (time-bounded) until every
#         node accepts connections and both replicas stream from s0p, then prints one line
#         per node: name role port. Idempotent.
# stop    stops every node (fast mode; immediate if fast does not finish in time).
# status  prints "name role port state" per node; exit 0 only if every node is running.
# destroy stops every node and removes the data.
#
# Environment: CLUSTER_BASE_PORT (base port), CLUSTER_WAIT (seconds every wait is bounded
# by, default 60).
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
NODES=(s0p s0r1 s0r2 s1p s2p)
PRIMARIES=(s0p s1p s2p)
REPLICAS=(s0r1 s0r2)
WAIT=${CLUSTER_WAIT:-60}

usage() {
	echo "usage: $0 start|stop|status|destroy [--base-port N]   (env CLUSTER_BASE_PORT, default 55432)"
}

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

note() {
	echo "cluster.sh: $*" >&2
}

cmd=""
base=${CLUSTER_BASE_PORT:-55432}
while [ $# -gt 0 ]; do
	case $1 in
	start | stop | status | destroy) cmd=$1 ;;
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
[ -n "$cmd" ] || {
	usage >&2
	exit 2
}
if ! [[ $base =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65530 ]; then
	die "bad base port '$base' (want 1024..65530)"
fi
if ! [[ $WAIT =~ ^[0-9]+$ ]] || [ "$WAIT" -lt 1 ]; then
	die "bad CLUSTER_WAIT '$WAIT'"
fi
[ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 not found in $PGBIN (install Debian package postgresql-15)"

# Settings from the caller's environment must not redirect our own connections.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS \
	PGPASSFILE PGSSLMODE PGTARGETSESSIONATTRS PGDATA PGCONNECT_TIMEOUT || true

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TOP="$REPO/.cluster"
LINK="$TOP/$base"
ALT="/tmp/shardgate-cluster-$base"
# The postgres programs run with / as their working folder: the caller's may be one the
# postgres user cannot enter.
cd /

# as_pg runs a command as the user that owns the data. fd 9 holds this script's lock and is
# closed so that a postmaster started from here does not keep holding it.
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (install postgresql-15)"
	command -v runuser >/dev/null || die "runuser (util-linux) not found"
	OWNER=postgres
	as_pg() { runuser -u postgres -- "$@" 9>&-; }
else
	OWNER=$(id -un)
	as_pg() { "$@" 9>&-; }
fi

port_of() {
	case $1 in
	s0p) echo $((base + 0)) ;;
	s0r1) echo $((base + 1)) ;;
	s0r2) echo $((base + 2)) ;;
	s1p) echo $((base + 3)) ;;
	s2p) echo $((base + 4)) ;;
	esac
}

role_of() {
	case $1 in
	s0r*) echo replica ;;
	*) echo primary ;;
	esac
}

# --- where the data lives -------------------------------------------------------------

DIR="" # the real (symlink-free) path of the cluster folder, once it exists

locate() { # sets DIR when the cluster folder exists
	DIR=""
	if [ -L "$LINK" ] || [ -d "$LINK" ]; then
		[ -d "$LINK" ] || die "$LINK is a dangling symlink; remove it (or run destroy)"
		DIR=$(cd "$LINK" && pwd -P)
		local owner
		owner=$(stat -c %U "$DIR")
		[ "$owner" = "$OWNER" ] ||
			die "$DIR belongs to '$owner', not '$OWNER' (run this as the user that created it, or as root)"
	fi
}

pg_can_use() { # can the data owner traverse folder $1?
	if [ "$OWNER" = postgres ] && [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- test -x "$1" 9>&-
	else
		test -x "$1"
	fi
}

create_dir() {
	locate
	[ -n "$DIR" ] && return 0
	local relocate=no
	if ! pg_can_use "$TOP"; then
		relocate=yes
		note "the $OWNER user cannot traverse $TOP"
	fi
	# A unix socket path is limited to 107 bytes: $DIR/s0r2/.s.PGSQL.NNNNN.lock must fit.
	if [ $((${#LINK} + ${#base} + 20)) -gt 100 ]; then
		relocate=yes
		note "$LINK is too long a path for unix sockets"
	fi
	if [ $relocate = yes ]; then
		if [ -e "$ALT" ] || [ -L "$ALT" ]; then
			if [ -L "$ALT" ] || [ ! -d "$ALT" ] || [ "$(stat -c %U "$ALT")" != "$OWNER" ]; then
				die "$ALT exists but is not a folder owned by $OWNER; remove it"
			fi
		else
			install -d -m 700 -o "$OWNER" "$ALT"
		fi
		ln -sfn "$ALT" "$LINK"
		note "data in $ALT; $LINK links to it"
	else
		install -d -m 700 -o "$OWNER" "$LINK"
	fi
	locate
	[ -n "$DIR" ] || die "could not create $LINK"
}

# --- nodes -----------------------------------------------------------------------------

node_dir() { echo "$DIR/$1"; }
node_data() { echo "$DIR/$1/data"; }
node_log() { echo "$DIR/$1/postgres.log"; }

node_pid() { # prints the postmaster's pid if node $1 is running
	local data pidf pid cwd
	data=$(node_data "$1")
	pidf="$data/postmaster.pid"
	[ -f "$pidf" ] || return 1
	pid=$(head -n 1 "$pidf" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[ -d "/proc/$pid" ] || return 1
	# The pid may have been reused by another process after a crash: a postmaster works in
	# its data folder.
	cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
	if [ "$cwd" = "$data" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $data"; then
		echo "$pid"
		return 0
	fi
	return 1
}

remove_stale_pidfile() {
	local pidf
	pidf="$(node_data "$1")/postmaster.pid"
	if [ -f "$pidf" ] && ! node_pid "$1" >/dev/null; then
		note "$1: removing stale postmaster.pid"
		as_pg rm -f "$pidf"
	fi
}

log_tail() { # prints the end of node $1's logs to stderr
	local f
	for f in "$(node_log "$1")" "$(node_dir "$1")/initdb.log" "$(node_dir "$1")/basebackup.log"; do
		# How the node was made matters only while it is not made yet.
		if [ "$f" != "$(node_log "$1")" ] && [ -f "$(node_dir "$1")/.created" ]; then
			continue
		fi
		if [ -s "$f" ]; then
			echo "----- $1: tail of $f -----" >&2
			tail -n 40 "$f" >&2
		fi
	done
}

fail_node() {
	note "$1: $2"
	log_tail "$1"
	exit 1
}

psql_node() { # psql as postgres over node $1's unix socket; more psql arguments follow
	local n=$1
	shift
	as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(node_dir "$n")" -p "$(port_of "$n")" -U postgres "$@"
}

write_node_conf() { # the settings that differ between nodes
	as_pg tee "$(node_data "$1")/node.conf" >/dev/null <<EOF
# written by tests/cluster.sh for node $1
port = $(port_of "$1")
unix_socket_directories = '$(node_dir "$1")'
cluster_name = '$1'
EOF
}

CREATED=no # set by init_primary: did it create the node?

init_primary() {
	local n=$1 d data
	d=$(node_dir "$n")
	data=$(node_data "$n")
	CREATED=no
	[ -f "$d/.created" ] && return 0
	if [ -d "$d" ]; then
		note "$n: removing an incomplete node"
		stop_node "$n" || true
		rm -rf "$d"
	fi
	as_pg mkdir -m 700 "$d"
	# shellcheck disable=SC2016 # $1 is expanded by that sh
	as_pg sh -c 'umask 077; echo postgres >"$1"' sh "$d/.pwfile"
	if ! as_pg "$PGBIN/initdb" -D "$data" -U postgres --pwfile="$d/.pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync \
		>"$d/initdb.log" 2>&1; then
		fail_node "$n" "initdb failed"
	fi
	as_pg rm -f "$d/.pwfile"
	as_pg tee -a "$data/postgresql.conf" >/dev/null <<'EOF'

# ---- shardgate test cluster (tests/cluster.sh) ----
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 64MB
huge_pages = off
password_encryption = 'scram-sha-256'
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
max_logical_replication_workers = 8
max_worker_processes = 16
max_prepared_transactions = 20
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
fsync = off
synchronous_commit = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
# port, unix_socket_directories and cluster_name: per node
include_if_exists = 'node.conf'
EOF
	as_pg tee "$data/pg_hba.conf" >/dev/null <<'EOF'
# written by tests/cluster.sh
# TYPE  DATABASE     USER       ADDRESS        METHOD
local   all          all                       trust
local   replication  all                       trust
host    all          md5user    127.0.0.1/32   md5
host    all          pwuser     127.0.0.1/32   password
host    all          trustuser  127.0.0.1/32   trust
host    all          all        127.0.0.1/32   scram-sha-256
host    replication  all        127.0.0.1/32   scram-sha-256
EOF
	write_node_conf "$n"
	as_pg touch "$d/.created"
	CREATED=yes
}

setup_primary() { # database app and the test roles; idempotent
	psql_node "$1" -d postgres >/dev/null <<'SQL' || fail_node "$1" "setting up database app and test roles failed"
SELECT 'CREATE DATABASE app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app')
\gexec
SET password_encryption = 'md5';
SELECT 'CREATE ROLE md5user LOGIN PASSWORD ''md5pass'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'md5user')
\gexec
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE pwuser LOGIN PASSWORD ''pwpass'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pwuser')
\gexec
SELECT 'CREATE ROLE trustuser LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trustuser')
\gexec
SQL
}

create_replica() {
	local n=$1 d data
	d=$(node_dir "$n")
	data=$(node_data "$n")
	[ -f "$d/.created" ] && return 0
	if [ -d "$d" ]; then
		note "$n: removing an incomplete node"
		stop_node "$n" || true
		rm -rf "$d"
	fi
	as_pg mkdir -m 700 "$d"
	# A slot left over from an earlier, failed attempt would make --create-slot fail.
	psql_node s0p -d postgres -c \
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$n' AND NOT active" \
		>/dev/null || fail_node s0p "could not drop the old slot $n"
	if ! as_pg "$PGBIN/pg_basebackup" -D "$data" \
		-d "host=127.0.0.1 port=$(port_of s0p) user=postgres password=postgres application_name=$n" \
		-R -C -S "$n" -X stream -c fast --no-sync >"$d/basebackup.log" 2>&1; then
		fail_node "$n" "pg_basebackup from s0p failed"
	fi
	write_node_conf "$n"
	as_pg touch "$d/.created"
}

start_node() {
	local n=$1 log size deadline=$((SECONDS + WAIT))
	log=$(node_log "$n")
	node_pid "$n" >/dev/null && return 0
	remove_stale_pidfile "$n"
	while :; do
		size=$(stat -c %s "$log" 2>/dev/null || echo 0)
		if as_pg "$PGBIN/pg_ctl" -D "$(node_data "$n")" -l "$log" -w -t "$WAIT" -s start >/dev/null 2>&1; then
			return 0
		fi
		# The ports lie in Linux's default ephemeral range (32768-60999): a client socket may
		# hold one for a moment. Retry while the port is busy, within the time bound.
		if [ $SECONDS -lt $deadline ] && ! node_pid "$n" >/dev/null &&
			tail -c +$((size + 1)) "$log" 2>/dev/null | grep -q 'could not bind'; then
			note "$n: port $(port_of "$n") is busy; retrying"
			sleep 1
			continue
		fi
		fail_node "$n" "did not start (waited up to ${WAIT}s)"
	done
}

stop_node() { # returns non-zero when the node is still running afterwards
	local n=$1 data
	data=$(node_data "$n")
	[ -d "$data" ] || return 0
	if ! node_pid "$n" >/dev/null; then
		remove_stale_pidfile "$n"
		return 0
	fi
	if as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t "$WAIT" -s stop >/dev/null 2>&1; then
		return 0
	fi
	note "$n: fast shutdown did not finish within ${WAIT}s; trying immediate"
	log_tail "$n"
	as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t "$WAIT" -s stop >/dev/null 2>&1 || true
	! node_pid "$n" >/dev/null
}

wait_ready() { # until node $1 accepts TCP connections
	local n=$1 deadline=$((SECONDS + WAIT))
	until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$(port_of "$n")" -t 2; do
		[ $SECONDS -lt $deadline ] || fail_node "$n" "does not accept connections on 127.0.0.1:$(port_of "$n") after ${WAIT}s"
		node_pid "$n" >/dev/null || fail_node "$n" "is not running"
		sleep 0.2
	done
}

wait_streaming() {
	local deadline=$((SECONDS + WAIT)) got=""
	while :; do
		got=$(psql_node s0p -d postgres -At -c \
			"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN ('s0r1', 's0r2')" \
			2>/dev/null || true)
		[ "$got" = 2 ] && return 0
		if [ $SECONDS -ge $deadline ]; then
			note "replicas are not both streaming after ${WAIT}s (streaming: ${got:-?})"
			psql_node s0p -d postgres -c "SELECT application_name, state, sent_lsn, replay_lsn FROM pg_stat_replication" >&2 || true
			log_tail s0r1
			log_tail s0r2
			log_tail s0p
			exit 1
		fi
		sleep 0.2
	done
}

# --- commands --------------------------------------------------------------------------

do_start() {
	create_dir
	local n fresh_s0=no
	for n in "${PRIMARIES[@]}"; do
		init_primary "$n"
		if [ $CREATED = yes ] && [ "$n" = s0p ]; then
			fresh_s0=yes
		fi
	done
	if [ $fresh_s0 = yes ]; then
		# Replicas of an earlier s0p cannot follow a new one.
		for n in "${REPLICAS[@]}"; do
			if [ -d "$(node_dir "$n")" ]; then
				note "$n: s0p was created anew; re-creating $n"
				stop_node "$n" || die "could not stop $n"
				rm -rf "$(node_dir "$n")"
			fi
		done
	fi
	for n in "${PRIMARIES[@]}"; do
		start_node "$n"
	done
	for n in "${PRIMARIES[@]}"; do
		wait_ready "$n"
		setup_primary "$n"
	done
	for n in "${REPLICAS[@]}"; do
		create_replica "$n"
		start_node "$n"
	done
	for n in "${REPLICAS[@]}"; do
		wait_ready "$n"
	done
	wait_streaming
	for n in "${NODES[@]}"; do
		echo "$n $(role_of "$n") $(port_of "$n")"
	done
}

do_stop() {
	locate
	[ -n "$DIR" ] || return 0
	local n rc=0
	for n in "${REPLICAS[@]}" "${PRIMARIES[@]}"; do
		stop_node "$n" || {
			note "$n: still running"
			rc=1
		}
	done
	return $rc
}

do_status() {
	locate
	local n state rc=0
	for n in "${NODES[@]}"; do
		if [ -z "$DIR" ] || [ ! -f "$(node_dir "$n")/.created" ]; then
			state=absent
		elif node_pid "$n" >/dev/null; then
			state=running
		else
			state=stopped
		fi
		[ $state = running ] || rc=1
		echo "$n $(role_of "$n") $(port_of "$n") $state"
	done
	return $rc
}

do_destroy() {
	locate
	if [ -n "$DIR" ]; then
		do_stop || note "some nodes did not stop; removing the data anyway"
		case $DIR in
		"$ALT" | "$TOP/$base") rm -rf "$DIR" ;;
		*) die "refusing to remove unexpected folder $DIR" ;;
		esac
	fi
	if [ -L "$LINK" ]; then
		rm -f "$LINK"
	fi
	rm -f "$TOP/.$base.lock"
}

# One command at a time per topology (status only reads; with no cluster there is nothing
# to guard, and nothing is created).
if [ "$cmd" = start ] || { [ "$cmd" != status ] && { [ -e "$LINK" ] || [ -L "$LINK" ]; }; }; then
	if ! [ -d "$TOP" ]; then
		install -d -m 755 "$TOP"
	fi
	exec 9>>"$TOP/.$base.lock"
	if command -v flock >/dev/null; then
		flock -w $((WAIT * 5)) 9 || die "another cluster.sh is busy with base port $base"
	fi
fi

case $cmd in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
destroy) do_destroy ;;
esac
