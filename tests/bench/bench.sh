#!/usr/bin/env bash
# tests/bench/bench.sh: pgbench straight to PostgreSQL, through PgBouncer and through
# shardgate (primary only, and splitting reads over the replicas), interleaved and repeated;
# prints a report. `make bench` runs it after building
# ./shardgate. This is a report, not a test: nothing here asserts on timings.
#
# What it does (DESIGN.md, "Parsing cost is the budget" and "Tests"):
#   1. starts its own cluster (tests/cluster.sh, base port 27432) and loads pgbench data at
#      scale 10 on the s0 primary;
#   2. starts PgBouncer (transaction mode, 127.0.0.1:27500) and two shardgates (transaction
#      mode), both with pools of 20 server connections: `shardgate` (127.0.0.1:27600) knows
#      only the s0 primary and measures the pure proxy overhead; `shardgate-split`
#      (127.0.0.1:27601) knows the primary and both streaming replicas (BASE+1, BASE+2) and
#      sends the reads to the replicas;
#   3. pgbench -c 16 -j 2, select-only (-S) and TPC-B-like, -M simple|extended|prepared,
#      against direct / pgbouncer / shardgate / shardgate-split, interleaved (the order
#      rotates each round), BENCH_ROUNDS rounds of BENCH_SECONDS each; the median over
#      rounds is reported (PgBouncer 1.18 cannot do -M prepared in transaction mode: n/a;
#      shardgate-split runs only the -S script: the TPC-B writes all go to the primary).
#      Before each shardgate-split run both replicas must have replayed the primary's WAL
#      (bounded wait, 60 s);
#   4. one pgbench -c 1 -S -M simple run per target except shardgate-split: latency added
#      by each proxy; then one -S -M simple run through shardgate-split with the
#      transactions committed in database app counted on each node (pg_stat_database)
#      before and after: where the reads went;
#   5. proxy CPU per transaction (utime+stime from /proc/PID/stat around the -S runs) and
#      system calls per transaction (strace -c -f -p PID on a separate short -S simple run);
#   6. VmRSS of shardgate holding BENCH_IDLE_CLIENTS (10000) idle client connections;
#   7. prints the table, and writes build/bench/results.txt (key=value) and
#      build/bench/report.txt (the table); pgbench and proxy logs go to build/bench/logs/.
# When shardgate fails under load the error is recorded in the report (and the proxy is
# restarted if it died); the script fails only when something cannot start at all.
#
# Environment: BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_STRACE_SECONDS (5),
# BENCH_IDLE_CLIENTS (10000). With the defaults the whole run takes about 11 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd -P)

SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
STRACE_SECS=${BENCH_STRACE_SECONDS:-5}
IDLE_CLIENTS=${BENCH_IDLE_CLIENTS:-10000}
BASE=27432
PGB_PORT=27500
SG_PORT=27600
SG_SPLIT_PORT=27601
REPLICA1_PORT=$((BASE + 1)) # tests/cluster.sh: s0r1 and s0r2 stream from the s0 primary
REPLICA2_PORT=$((BASE + 2))
REPLAY_WAIT=60   # seconds a shardgate-split run waits for the replicas to replay the WAL
STATS_SETTLE=11  # PostgreSQL 15 backends flush their statistics within 10 s of going idle
CLIENTS=16
THREADS=2
POOL_SIZE=20

PGBIN=/usr/lib/postgresql/15/bin
PGBOUNCER=/usr/sbin/pgbouncer
PYTHON=/usr/bin/python3
SHARDGATE=$REPO/shardgate
OUT=$REPO/build/bench
LOGS=$OUT/logs
RESULTS=$OUT/results.txt
REPORT=$OUT/report.txt

SCRIPTS=(select tpcb)
MODES=(simple extended prepared)
TARGETS=(direct pgbouncer shardgate shardgate-split)
C1_TARGETS=(direct pgbouncer shardgate) # the one-client latency step

die() {
	echo "bench.sh: $*" >&2
	exit 1
}
note() { echo "bench: $*" >&2; }

for v in SECS ROUNDS STRACE_SECS IDLE_CLIENTS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# Settings from the caller's environment must not redirect pgbench or psql.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS \
	PGPASSFILE PGSSLMODE PGTARGETSESSIONATTRS PGCONNECT_TIMEOUT || true
export PGPASSWORD=postgres # only the direct connections ask for it

# --- prerequisites ----------------------------------------------------------------------

[ -x "$SHARDGATE" ] || die "$SHARDGATE not found: build it first (make shardgate)"
{ [ -x "$PGBIN/pgbench" ] && [ -x "$PGBIN/psql" ]; } || die "pgbench/psql not found in $PGBIN (Debian postgresql-client-15)"
[ -x "$PGBOUNCER" ] || die "$PGBOUNCER not found (Debian package pgbouncer)"
[ -x "$PYTHON" ] || die "$PYTHON not found"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
if ! command -v strace >/dev/null; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		note "installing strace"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace >/dev/null ||
			die "could not install strace (apt-get install strace)"
	else
		die "strace not found (apt-get install strace)"
	fi
fi
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (PgBouncer refuses root)"
	command -v runuser >/dev/null || die "runuser (util-linux) not found"
fi

port_busy() { # is something listening on 127.0.0.1:$1?
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for p in $PGB_PORT $SG_PORT $SG_SPLIT_PORT; do
	port_busy "$p" && die "something already listens on 127.0.0.1:$p; stop it first"
done

# 10,000 idle clients need 10,000 descriptors in the client script and in the proxy, which
# inherits this limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE_CLIENTS + 200)) ]; then
	note "open-file limit is $NOFILE (hard $(ulimit -Hn)): idle clients reduced from $IDLE_CLIENTS to $((NOFILE - 200))"
	IDLE_CLIENTS=$((NOFILE - 200))
fi

START_TIME=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$LOGS"
mkdir -p "$LOGS"
TMP=$(mktemp -d /tmp/shardgate-bench.XXXXXX)
chmod 755 "$TMP"

# --- cleanup ----------------------------------------------------------------------------

SG_PID=""
SGS_PID="" # shardgate-split
PGB_PID=""
PGB_WRAPPER_PID=""
STRACE_PID=""
CLUSTER_STARTED=no

# Stops a shardgate process $1 named $2 (SIGINT, then SIGKILL after 40 s); sets SG_EXIT to
# its exit status.
SG_EXIT=""
stop_shardgate_pid() {
	local pid=$1 what=$2 i
	kill -INT "$pid" 2>/dev/null || true
	for i in $(seq 1 400); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		note "$what did not exit within 40 s of SIGINT; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	SG_EXIT=0
	wait "$pid" 2>/dev/null || SG_EXIT=$?
}
stop_shardgate() {
	[ -n "$SG_PID" ] || return 0
	stop_shardgate_pid "$SG_PID" shardgate
	SG_PID=""
}
stop_shardgate_split() {
	[ -n "$SGS_PID" ] || return 0
	stop_shardgate_pid "$SGS_PID" shardgate-split
	SGS_PID=""
}

stop_pgbouncer() {
	local i
	if [ -n "$PGB_PID" ]; then
		kill -TERM "$PGB_PID" 2>/dev/null || true
		for i in $(seq 1 100); do
			kill -0 "$PGB_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$PGB_PID" 2>/dev/null || true
	fi
	if [ -n "$PGB_WRAPPER_PID" ]; then
		wait "$PGB_WRAPPER_PID" 2>/dev/null || true
	fi
	PGB_PID=""
	PGB_WRAPPER_PID=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$STRACE_PID" ]; then
		kill -INT "$STRACE_PID" 2>/dev/null || true
		wait "$STRACE_PID" 2>/dev/null || true
	fi
	stop_shardgate
	stop_shardgate_split
	stop_pgbouncer
	if [ $CLUSTER_STARTED = yes ]; then
		tests/cluster.sh stop --base-port "$BASE" >/dev/null 2>&1 ||
			note "tests/cluster.sh stop --base-port $BASE failed"
	fi
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- cluster and data -------------------------------------------------------------------

psql_direct() {
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $BASE -U postgres -d app "$@"
}
# One value from node $1 (a port), over the postgres database so that database app's
# statistics do not count these look-ups; empty when the node does not answer.
psql_value() {
	local port=$1
	shift
	"$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres \
		-d postgres "$@" 2>>"$LOGS/psql-value.log" || true
}

note "starting the cluster on base port $BASE"
CLUSTER_STARTED=yes
tests/cluster.sh start --base-port $BASE >"$LOGS/cluster.log" 2>&1 || {
	cat "$LOGS/cluster.log" >&2
	die "tests/cluster.sh start --base-port $BASE failed"
}
note "pgbench -i -s 10 on 127.0.0.1:$BASE"
"$PGBIN/pgbench" -i -s 10 -q -h 127.0.0.1 -p $BASE -U postgres app >"$LOGS/pgbench-init.log" 2>&1 || {
	cat "$LOGS/pgbench-init.log" >&2
	die "pgbench -i failed"
}

# --- proxies ----------------------------------------------------------------------------

wait_accepting() { # port what log pid: until the proxy answers, or fail
	local port=$1 what=$2 log=$3 pid=$4 i
	for i in $(seq 1 100); do
		if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d app -t 1 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	echo "bench.sh: $what does not accept connections on 127.0.0.1:$port; its log ($log):" >&2
	tail -40 "$log" >&2
	return 1
}

PGB_DIR=$TMP/pgbouncer
mkdir -p "$PGB_DIR"
cat >"$PGB_DIR/pgbouncer.ini" <<INI
; written by tests/bench/bench.sh
[databases]
app = host=127.0.0.1 port=$BASE dbname=app user=postgres password=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
pidfile = $PGB_DIR/pgbouncer.pid
auth_type = trust
auth_file = $PGB_DIR/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 1000
log_connections = 0
log_disconnections = 0
INI
echo '"postgres" "postgres"' >"$PGB_DIR/userlist.txt"
chmod 600 "$PGB_DIR/userlist.txt"

start_pgbouncer() {
	local log=$LOGS/pgbouncer.log i
	rm -f "$PGB_DIR/pgbouncer.pid"
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres: "$PGB_DIR"
		# runuser's PAM session resets the open-file limit to 1024; max_client_conn 1000
		# needs a little more.
		# shellcheck disable=SC2016 # expanded by the inner bash
		runuser -u postgres -- bash -c 'ulimit -n 4096 2>/dev/null; exec "$@"' bash \
			"$PGBOUNCER" "$PGB_DIR/pgbouncer.ini" >>"$log" 2>&1 &
	else
		"$PGBOUNCER" "$PGB_DIR/pgbouncer.ini" >>"$log" 2>&1 &
	fi
	PGB_WRAPPER_PID=$!
	PGB_PID=""
	for i in $(seq 1 100); do
		if [ -s "$PGB_DIR/pgbouncer.pid" ]; then
			PGB_PID=$(cat "$PGB_DIR/pgbouncer.pid")
			break
		fi
		kill -0 "$PGB_WRAPPER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$PGB_PID" ]; then
		echo "bench.sh: PgBouncer did not start; its log ($log):" >&2
		tail -40 "$log" >&2
		return 1
	fi
	wait_accepting $PGB_PORT PgBouncer "$log" "$PGB_PID"
}

SG_CONFIG=$TMP/shardgate.yaml
cat >"$SG_CONFIG" <<YAML
# written by tests/bench/bench.sh
listen: 127.0.0.1:$SG_PORT
workers: 2
max_client_conn: 20000          # the idle-client memory step opens $IDLE_CLIENTS
pool: { mode: transaction, size: $POOL_SIZE }
log: { level: warning }
auth: { method: trust }
backend: { user: postgres, password: postgres }
shards:
  - name: s0
    primary: 127.0.0.1:$BASE
default_shard: s0
YAML
cp "$SG_CONFIG" "$OUT/shardgate.yaml"

SGS_CONFIG=$TMP/shardgate-split.yaml
cat >"$SGS_CONFIG" <<YAML
# written by tests/bench/bench.sh: reads split over the s0 primary's two streaming replicas
listen: 127.0.0.1:$SG_SPLIT_PORT
workers: 2
pool: { mode: transaction, size: $POOL_SIZE }
log: { level: warning }
health: { interval: 250ms }
auth: { method: trust }
backend: { user: postgres, password: postgres }
shards:
  - name: s0
    primary: 127.0.0.1:$BASE
    replicas: [127.0.0.1:$REPLICA1_PORT, 127.0.0.1:$REPLICA2_PORT]
default_shard: s0
YAML
cp "$SGS_CONFIG" "$OUT/shardgate-split.yaml"
cp "$PGB_DIR/pgbouncer.ini" "$OUT/pgbouncer.ini"

SG_STARTS=0
start_shardgate() {
	local log=$LOGS/shardgate.log
	SG_STARTS=$((SG_STARTS + 1))
	echo "=== start $SG_STARTS ($(date -u +%FT%TZ))" >>"$log"
	"$SHARDGATE" -c "$SG_CONFIG" >>"$log" 2>&1 &
	SG_PID=$!
	wait_accepting $SG_PORT shardgate "$log" "$SG_PID"
}
SGS_STARTS=0
start_shardgate_split() {
	local log=$LOGS/shardgate-split.log
	SGS_STARTS=$((SGS_STARTS + 1))
	echo "=== start $SGS_STARTS ($(date -u +%FT%TZ))" >>"$log"
	"$SHARDGATE" -c "$SGS_CONFIG" >>"$log" 2>&1 &
	SGS_PID=$!
	wait_accepting $SG_SPLIT_PORT shardgate-split "$log" "$SGS_PID"
}

note "starting PgBouncer on 127.0.0.1:$PGB_PORT, shardgate on 127.0.0.1:$SG_PORT and shardgate-split on 127.0.0.1:$SG_SPLIT_PORT"
start_pgbouncer || die "PgBouncer could not start"
start_shardgate || die "shardgate could not start"
start_shardgate_split || die "shardgate-split could not start"

# --- events and restarts ----------------------------------------------------------------

EVENTS=() # proxy deaths and restarts, in order

# How a process that has exited ended; reaps it.
exit_status_text() {
	local rc=0
	wait "$1" 2>/dev/null || rc=$?
	if [ $rc -gt 128 ]; then
		echo "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo ?))"
	else
		echo "exit status $rc"
	fi
}

# Restarts a proxy that died; records it. $1 = what was running when it was found dead.
check_proxies() {
	local during=$1 how tail_text
	if [ -n "$SG_PID" ] && ! kill -0 "$SG_PID" 2>/dev/null; then
		how=$(exit_status_text "$SG_PID")
		SG_PID=""
		tail_text=$({ grep -v '^===' "$LOGS/shardgate.log" || true; } | tail -3 | tr '\n' ' ' | cut -c1-400)
		EVENTS+=("shardgate died ($how) during $during; its log's last lines: ${tail_text:-(none)}")
		note "shardgate died ($how) during $during; restarting it"
		start_shardgate || die "shardgate could not be restarted"
	fi
	if [ -n "$SGS_PID" ] && ! kill -0 "$SGS_PID" 2>/dev/null; then
		how=$(exit_status_text "$SGS_PID")
		SGS_PID=""
		tail_text=$({ grep -v '^===' "$LOGS/shardgate-split.log" || true; } | tail -3 | tr '\n' ' ' | cut -c1-400)
		EVENTS+=("shardgate-split died ($how) during $during; its log's last lines: ${tail_text:-(none)}")
		note "shardgate-split died ($how) during $during; restarting it"
		start_shardgate_split || die "shardgate-split could not be restarted"
	fi
	if [ -n "$PGB_PID" ] && ! kill -0 "$PGB_PID" 2>/dev/null; then
		EVENTS+=("PgBouncer died during $during")
		note "PgBouncer died during $during; restarting it"
		stop_pgbouncer
		start_pgbouncer || die "PgBouncer could not be restarted"
	fi
}

# --- one pgbench run --------------------------------------------------------------------

port_of() {
	case $1 in
	direct) echo $BASE ;;
	pgbouncer) echo $PGB_PORT ;;
	shardgate) echo $SG_PORT ;;
	shardgate-split) echo $SG_SPLIT_PORT ;;
	esac
}
pid_of() {
	case $1 in
	pgbouncer) echo "$PGB_PID" ;;
	shardgate) echo "$SG_PID" ;;
	shardgate-split) echo "$SGS_PID" ;;
	*) echo "" ;;
	esac
}

cpu_ticks() { # utime+stime of process $1, in clock ticks (all threads)
	# Never fails: a proxy that died (and was reaped) reads as empty.
	{ sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null || true; } | awk 'NF { print $12 + $13 }'
}
CLK_TCK=$(getconf CLK_TCK)

# pgbench's own vacuum runs through the target; do it straight on the primary instead (and
# pass -n) so every target starts from the same state and the proxy only sees the workload.
reset_tables() {
	psql_direct -c 'VACUUM pgbench_branches' -c 'VACUUM pgbench_tellers' \
		-c 'TRUNCATE pgbench_history' >>"$LOGS/vacuum.log" 2>&1 ||
		die "vacuum on the primary failed; see $LOGS/vacuum.log"
}

# Waits (at most REPLAY_WAIT s) until both replicas have replayed the primary's WAL up to
# its current position, so that shardgate-split reads the same data from every node and no
# replica is held back by lag. Records the wait in REPLAY_WAITS; a timeout is an event.
REPLAY_WAITS=()
wait_replicas_replayed() {
	local label=$1 lsn port ok t0=$SECONDS i behind
	lsn=$(psql_value $BASE -c 'select pg_current_wal_lsn()')
	if [ -z "$lsn" ]; then
		EVENTS+=("$label: could not read pg_current_wal_lsn() on the primary; did not wait for the replicas")
		return 0
	fi
	for i in $(seq 1 $((REPLAY_WAIT * 10))); do
		behind=""
		for port in $REPLICA1_PORT $REPLICA2_PORT; do
			ok=$(psql_value "$port" -c "select coalesce(pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn, false)")
			[ "$ok" = t ] || behind+=" 127.0.0.1:$port"
		done
		if [ -z "$behind" ]; then
			REPLAY_WAITS+=("$((SECONDS - t0))")
			return 0
		fi
		[ $((SECONDS - t0)) -lt "$REPLAY_WAIT" ] || break
		sleep 0.1
	done
	REPLAY_WAITS+=("$((SECONDS - t0))")
	EVENTS+=("$label: replica(s)$behind had not replayed the primary's WAL up to $lsn after $REPLAY_WAIT s; ran anyway")
	note "replica(s)$behind had not replayed up to $lsn after $REPLAY_WAIT s; running $label anyway"
}

# run_pgbench LABEL TARGET SCRIPT MODE CLIENTS THREADS SECONDS
# Sets R_TPS, R_LAT_MS, R_TXNS (empty when unknown), R_CPU_TICKS (proxy CPU during the run,
# empty for direct) and R_ERR (empty when the run was clean).
run_pgbench() {
	local label=$1 target=$2 script=$3 mode=$4 clients=$5 threads=$6 secs=$7
	local log=$LOGS/$label.log port pid rc=0 c0="" c1="" sflag=()
	port=$(port_of "$target")
	if [ "$script" = select ]; then sflag=(-S); fi
	check_proxies "the start of $label"
	pid=$(pid_of "$target")
	reset_tables
	if [ "$target" = shardgate-split ]; then wait_replicas_replayed "$label"; fi
	if [ -n "$pid" ]; then c0=$(cpu_ticks "$pid"); fi
	timeout -k 5 $((secs + 60)) "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres \
		-c "$clients" -j "$threads" -M "$mode" "${sflag[@]}" -T "$secs" app >"$log" 2>&1 || rc=$?
	if [ -n "$pid" ]; then c1=$(cpu_ticks "$pid"); fi
	R_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
	R_LAT_MS=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$log")
	R_TXNS=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	R_CPU_TICKS=""
	if [ -n "$c0" ] && [ -n "$c1" ]; then
		R_CPU_TICKS=$((c1 - c0))
	fi
	R_ERR=""
	if [ $rc -ne 0 ] || [ -z "$R_TPS" ]; then
		local first
		first=$(grep -m1 -iE 'error|fatal|abort|could not|server closed' "$log" | cut -c1-300 || true)
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			R_ERR="pgbench hung: still running $((secs + 60)) s after start (killed)${first:+; first error: $first}"
		else
			R_ERR="pgbench exit $rc: ${first:-no error line; see $log}"
		fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			R_ERR="$R_ERR [the $target process died]"
		fi
		R_TPS=""
		R_LAT_MS=""
	fi
	local shown=${R_TPS:-ERR}
	note "$(printf '%-40s tps %-12s lat %s ms%s' "$label" "$shown" "${R_LAT_MS:--}" "${R_ERR:+  ($R_ERR)}")"
	check_proxies "$label"
}

median() { # the median of its numeric arguments (empty arguments ignored)
	printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{a[NR] = $1}
		END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2];
		      else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { # $1 / $2 to 2 decimals, or n/a
	if [ -n "$1" ] && [ -n "$2" ] && [ "$1" != n/a ] && [ "$2" != n/a ]; then
		awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
	else
		echo n/a
	fi
}

declare -A TPS LAT CPU_US ERRS

# skip TARGET MODE SCRIPT: PgBouncer 1.18 cannot run -M prepared in transaction mode
# (support came in 1.21); shardgate-split runs only the select-only script (the TPC-B
# script's writes all go to the primary anyway).
skip() {
	{ [ "$1" = pgbouncer ] && [ "$2" = prepared ]; } ||
		{ [ "$1" = shardgate-split ] && [ "$3" != select ]; }
}

# --- 3. the throughput matrix -----------------------------------------------------------

for round in $(seq 1 "$ROUNDS"); do
	rot=$(((round - 1) % ${#TARGETS[@]}))
	order=("${TARGETS[@]:$rot}" "${TARGETS[@]:0:$rot}")
	note "round $round of $ROUNDS (order: ${order[*]})"
	for script in "${SCRIPTS[@]}"; do
		for mode in "${MODES[@]}"; do
			for target in "${order[@]}"; do
				skip "$target" "$mode" "$script" && continue
				key=$script.$mode.$target
				run_pgbench "r$round-$script-$mode-$target" "$target" "$script" "$mode" \
					$CLIENTS $THREADS "$SECS"
				TPS[$key]+="$R_TPS "
				LAT[$key]+="$R_LAT_MS "
				if [ -n "$R_ERR" ]; then
					ERRS[$key]+="round $round: $R_ERR"$'\n'
				elif [ -n "$R_CPU_TICKS" ] && [ -n "$R_TXNS" ] && [ "$R_TXNS" -gt 0 ]; then
					CPU_US[$key]+="$(awk -v t="$R_CPU_TICKS" -v hz="$CLK_TCK" -v n="$R_TXNS" \
						'BEGIN { printf "%.2f", t * 1e6 / hz / n }') "
				fi
			done
		done
	done
done

# --- 4. one client: added latency -------------------------------------------------------

declare -A C1_LAT_US C1_TPS C1_ERR
for target in "${C1_TARGETS[@]}"; do
	run_pgbench "c1-select-simple-$target" "$target" select simple 1 1 "$SECS"
	C1_TPS[$target]=$R_TPS
	C1_LAT_US[$target]=""
	if [ -n "$R_LAT_MS" ]; then
		C1_LAT_US[$target]=$(awk -v l="$R_LAT_MS" 'BEGIN { printf "%.0f", l * 1000 }')
	fi
	C1_ERR[$target]=$R_ERR
done

# --- 4b. where shardgate-split sent the reads -------------------------------------------
# Transactions committed in database app on each node around one -S -M simple run. Every
# backend flushes its statistics within 10 s of going idle (PostgreSQL 15), so the counts
# are read after STATS_SETTLE s of quiet on both sides of the run. The look-ups and the
# replay waits use database postgres, as do shardgate's health checks; the primary's count
# includes the few statements of the vacuum step before the run.
SPREAD_NODES=(primary replica1 replica2)
declare -A SPREAD_PORT=([primary]=$BASE [replica1]=$REPLICA1_PORT [replica2]=$REPLICA2_PORT)
declare -A SPREAD_BEFORE SPREAD_DELTA
XACT_SQL="select sum(xact_commit) from pg_stat_database where datname = 'app'"
note "counting the transactions per node around one shardgate-split -S -M simple run (${STATS_SETTLE} s settle before and after)"
check_proxies "the start of the spread run"
sleep "$STATS_SETTLE"
for node in "${SPREAD_NODES[@]}"; do
	SPREAD_BEFORE[$node]=$(psql_value "${SPREAD_PORT[$node]}" -c "$XACT_SQL")
done
run_pgbench "spread-select-simple-shardgate-split" shardgate-split select simple $CLIENTS $THREADS "$SECS"
SPREAD_TPS=$R_TPS
SPREAD_TXNS=$R_TXNS
SPREAD_ERR=$R_ERR
sleep "$STATS_SETTLE"
for node in "${SPREAD_NODES[@]}"; do
	after=$(psql_value "${SPREAD_PORT[$node]}" -c "$XACT_SQL")
	SPREAD_DELTA[$node]=""
	if [ -n "${SPREAD_BEFORE[$node]}" ] && [ -n "$after" ]; then
		SPREAD_DELTA[$node]=$((after - SPREAD_BEFORE[$node]))
	fi
done

# --- 5. system calls per transaction ----------------------------------------------------

declare -A SYSCALLS SYSCALL_TOP STRACE_TPS STRACE_ERR
for target in pgbouncer shardgate; do
	check_proxies "the start of the strace run for $target"
	pid=$(pid_of "$target")
	out=$LOGS/strace-$target.txt
	strace -c -f -p "$pid" -o "$out" 2>"$LOGS/strace-$target.stderr" &
	STRACE_PID=$!
	sleep 1
	if ! kill -0 "$STRACE_PID" 2>/dev/null; then
		STRACE_ERR[$target]="strace could not attach: $(head -c 300 "$LOGS/strace-$target.stderr")"
		wait "$STRACE_PID" 2>/dev/null || true
		STRACE_PID=""
		continue
	fi
	run_pgbench "strace-select-simple-$target" "$target" select simple $CLIENTS $THREADS "$STRACE_SECS"
	kill -INT "$STRACE_PID" 2>/dev/null || true
	wait "$STRACE_PID" 2>/dev/null || true
	STRACE_PID=""
	STRACE_TPS[$target]=$R_TPS
	calls=$(awk '$NF == "total" { print $4 }' "$out" 2>/dev/null || true)
	if [ -n "$R_ERR" ]; then
		STRACE_ERR[$target]=$R_ERR
	elif [ -z "$calls" ] || [ -z "$R_TXNS" ] || [ "$R_TXNS" -eq 0 ]; then
		STRACE_ERR[$target]="no strace summary or no transactions (see $out)"
	else
		SYSCALLS[$target]=$(awk -v c="$calls" -v n="$R_TXNS" 'BEGIN { printf "%.2f", c / n }')
		# The four most frequent calls, per transaction.
		SYSCALL_TOP[$target]=$(awk -v n="$R_TXNS" '
			/^------/ { body++; next }
			body == 1 && $NF != "total" && NF >= 5 { printf "%s %s\n", $4, $NF }' "$out" |
			sort -k1,1nr | head -4 |
			awk -v n="$R_TXNS" '$1 / n >= 0.005 { printf "%s%s %.2f", (out++ ? ", " : ""), $2, $1 / n }' ||
			true)
	fi
done

# --- 6. memory with idle clients --------------------------------------------------------

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
check_proxies "the start of the idle-client step"
IDLE_RSS_BEFORE=$(rss_kib "$SG_PID")
note "opening $IDLE_CLIENTS idle client connections to shardgate"
IDLE_OUT=$(timeout -k 5 400 "$PYTHON" tests/bench/idle_clients.py --port $SG_PORT \
	--count "$IDLE_CLIENTS" --pid "$SG_PID" 2>"$LOGS/idle-clients.stderr") || {
	rc=$?
	IDLE_OUT="failed=?"$'\n'"first_error=idle_clients.py exit $rc: $(tail -c 300 "$LOGS/idle-clients.stderr")"
}
echo "$IDLE_OUT" >"$LOGS/idle-clients.txt"
idle_get() { sed -n "s/^$1=//p" <<<"$IDLE_OUT"; }
IDLE_READY=$(idle_get ready)
IDLE_FAILED=$(idle_get failed)
IDLE_ERROR=$(idle_get first_error)
IDLE_OPEN_S=$(idle_get seconds_to_open)
IDLE_RSS=$(idle_get rss_kib)
IDLE_FDS=$(idle_get proxy_fds)
sleep 2
IDLE_RSS_AFTER=""
if [ -n "$SG_PID" ] && kill -0 "$SG_PID" 2>/dev/null; then
	IDLE_RSS_AFTER=$(rss_kib "$SG_PID")
fi
check_proxies "the idle-client step"

# --- shut down --------------------------------------------------------------------------

stop_shardgate
SG_FINAL_EXIT=$SG_EXIT
stop_shardgate_split
SGS_FINAL_EXIT=$SG_EXIT
stop_pgbouncer
tests/cluster.sh stop --base-port $BASE >/dev/null 2>&1 || note "tests/cluster.sh stop failed"
CLUSTER_STARTED=no
ELAPSED=$((SECONDS - START_TIME))

# --- 7. report --------------------------------------------------------------------------

mib() { if [ -n "$1" ]; then awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; fi; }
{
	echo "# shardgate bench results (tests/bench/bench.sh); key=value, n/a when not measured"
	echo "date=$(date -u +%FT%TZ)"
	echo "git_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "bench_seconds=$SECS"
	echo "bench_rounds=$ROUNDS"
	echo "clients=$CLIENTS"
	echo "threads=$THREADS"
	echo "pool_size=$POOL_SIZE"
	echo "cpus=$(nproc)"
	echo "loadavg_at_start=$LOAD_START"
	echo "loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "elapsed_seconds=$ELAPSED"
} >"$RESULTS"
res() { echo "$1=$2" >>"$RESULTS"; }

REP=$TMP/report
{
	echo
	echo "shardgate bench: pgbench -c $CLIENTS -j $THREADS, scale 10, ${SECS} s per run, median of $ROUNDS round(s)"
	echo "(tps excluding connection time; pool size $POOL_SIZE; shardgate workers 2; PgBouncer 1.18, one process;"
	echo " direct, pgbouncer and shardgate use the s0 primary only; split = shardgate-split, reads over"
	echo " the primary's two streaming replicas; $(nproc) CPUs shared by pgbench, proxies and all PostgreSQL nodes;"
	echo " load average at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg))"
	echo
	printf '%-7s %-9s %10s %10s %10s %10s  %7s %7s %7s %7s %7s   %8s %8s %8s %8s\n' script mode \
		"direct" "pgbouncer" "shardgate" "split" "sg/pgb" "sg/dir" "pgb/dir" "spl/pgb" "spl/dir" \
		"lat dir" "lat pgb" "lat sg" "lat spl"
	printf '%-7s %-9s %10s %10s %10s %10s  %7s %7s %7s %7s %7s   %8s %8s %8s %8s\n' "" "" tps tps tps tps \
		"" "" "" "" "" ms ms ms ms
	for script in "${SCRIPTS[@]}"; do
		for mode in "${MODES[@]}"; do
			declare -A med=() lmed=() cell=() lcell=()
			for target in "${TARGETS[@]}"; do
				key=$script.$mode.$target
				if skip "$target" "$mode" "$script"; then
					med[$target]=n/a
					lmed[$target]=n/a
				else
					# shellcheck disable=SC2086 # a list of numbers
					med[$target]=$(median ${TPS[$key]:-})
					# shellcheck disable=SC2086
					lmed[$target]=$(median ${LAT[$key]:-})
				fi
				lcell[$target]=${lmed[$target]:-ERR}
				if [ -z "${med[$target]}" ]; then
					cell[$target]=ERR
				elif [ "${med[$target]}" = n/a ]; then
					cell[$target]=n/a
				else
					cell[$target]=$(awk -v v="${med[$target]}" 'BEGIN { printf "%.0f", v }')
					[ -z "${ERRS[$key]:-}" ] || cell[$target]+="!"
				fi
				res "tps.$key" "${med[$target]:-error}"
				res "tps.$key.rounds" "$(echo "${TPS[$key]:-}" | xargs | tr ' ' ',')"
				res "latency_ms.$key" "${lmed[$target]:-error}"
				if [ -n "${ERRS[$key]:-}" ]; then
					res "error.$key" "$(printf '%s' "${ERRS[$key]}" | tr '\n' '|' | sed 's/|$//')"
				fi
			done
			sp=$(ratio "${med[shardgate]}" "${med[pgbouncer]}")
			sd=$(ratio "${med[shardgate]}" "${med[direct]}")
			pd=$(ratio "${med[pgbouncer]}" "${med[direct]}")
			res "ratio.$script.$mode.shardgate_over_pgbouncer" "$sp"
			res "ratio.$script.$mode.shardgate_over_direct" "$sd"
			res "ratio.$script.$mode.pgbouncer_over_direct" "$pd"
			xp=$(ratio "${med[shardgate-split]}" "${med[pgbouncer]}")
			xd=$(ratio "${med[shardgate-split]}" "${med[direct]}")
			res "ratio.$script.$mode.shardgate-split_over_pgbouncer" "$xp"
			res "ratio.$script.$mode.shardgate-split_over_direct" "$xd"
			printf '%-7s %-9s %10s %10s %10s %10s  %7s %7s %7s %7s %7s   %8s %8s %8s %8s\n' "$script" "$mode" \
				"${cell[direct]}" "${cell[pgbouncer]}" "${cell[shardgate]}" "${cell[shardgate-split]}" \
				"$sp" "$sd" "$pd" "$xp" "$xd" \
				"${lcell[direct]}" "${lcell[pgbouncer]}" "${lcell[shardgate]}" "${lcell[shardgate-split]}"
			unset med lmed cell lcell
		done
	done
	echo "(select = pgbench -S; tpcb = the default TPC-B-like script; n/a: PgBouncer 1.18 cannot run"
	echo " -M prepared in transaction mode, and split runs only -S (TPC-B writes all go to the primary);"
	echo " ERR: every round failed; N!: some round failed, see errors)"
	wmax=n/a
	if [ ${#REPLAY_WAITS[@]} -gt 0 ]; then
		wmax=$(printf '%s\n' "${REPLAY_WAITS[@]}" | sort -n | tail -1)
	fi
	echo "(before each split run the replicas had replayed the primary's WAL; longest wait: $wmax s)"
	res replay_wait_max_seconds.shardgate-split "$wmax"

	echo
	echo "where shardgate-split sent the reads (one pgbench -c $CLIENTS -S -M simple run, ${SECS} s: transactions"
	echo "committed in database app per node, from pg_stat_database, read directly before and after):"
	spread_tps=${SPREAD_TPS:+$(awk -v v="$SPREAD_TPS" 'BEGIN { printf "%.0f", v }')}
	printf '  %-9s %6s %12s\n' node port "xact_commit"
	for node in "${SPREAD_NODES[@]}"; do
		printf '  %-9s %6s %12s\n' "$node" "${SPREAD_PORT[$node]}" "${SPREAD_DELTA[$node]:-n/a}"
		res "xact_commit_delta.select.simple.shardgate-split.$node" "${SPREAD_DELTA[$node]:-n/a}"
	done
	echo "  (pgbench: ${SPREAD_TXNS:-?} transactions, ${spread_tps:-ERR} tps${SPREAD_ERR:+; error: $SPREAD_ERR})"
	res "spread_run.tps.shardgate-split" "${SPREAD_TPS:-error}"
	res "spread_run.transactions.shardgate-split" "${SPREAD_TXNS:-n/a}"
	[ -z "$SPREAD_ERR" ] || res "error.spread_run.shardgate-split" "$SPREAD_ERR"

	echo
	echo "one client (pgbench -c 1 -j 1 -S -M simple, ${SECS} s):"
	# printf counts bytes: a header holding "µ" (2 bytes) gets one more column.
	printf '  %-10s %10s %13s %11s\n' target tps "latency µs" "added µs"
	for target in "${C1_TARGETS[@]}"; do
		lat=${C1_LAT_US[$target]}
		added=n/a
		if [ "$target" = direct ]; then
			added=-
		elif [ -n "$lat" ] && [ -n "${C1_LAT_US[direct]}" ]; then
			added=$((lat - C1_LAT_US[direct]))
		fi
		tps=${C1_TPS[$target]:+$(awk -v v="${C1_TPS[$target]}" 'BEGIN { printf "%.0f", v }')}
		printf '  %-10s %10s %12s %10s\n' "$target" "${tps:-ERR}" "${lat:-ERR}" "$added"
		res "c1.tps.$target" "${C1_TPS[$target]:-error}"
		res "c1.latency_us.$target" "${lat:-error}"
		[ "$target" = direct ] || res "c1.added_us.$target" "$added"
		[ -z "${C1_ERR[$target]}" ] || res "error.c1.$target" "${C1_ERR[$target]}"
	done

	echo
	echo "proxy cost, pgbench -S, $CLIENTS clients (CPU: utime+stime of the proxy process / transactions,"
	echo "median over rounds; system calls: strace -c -f -p PID during a separate ${STRACE_SECS} s -S -M simple run):"
	printf '  %-10s %19s %19s %20s   %s\n' proxy "CPU µs/txn simple" "CPU µs/txn ext." "syscalls/transaction" "most frequent (per transaction)"
	for target in pgbouncer shardgate; do
		# shellcheck disable=SC2086
		cs=$(median ${CPU_US[select.simple.$target]:-})
		# shellcheck disable=SC2086
		ce=$(median ${CPU_US[select.extended.$target]:-})
		sc=${SYSCALLS[$target]:-}
		printf '  %-10s %18s %18s %20s   %s\n' "$target" "${cs:-n/a}" "${ce:-n/a}" "${sc:-n/a}" \
			"${SYSCALL_TOP[$target]:-${STRACE_ERR[$target]:-}}"
		res "cpu_us_per_txn.select.simple.$target" "${cs:-n/a}"
		res "cpu_us_per_txn.select.extended.$target" "${ce:-n/a}"
		for script in "${SCRIPTS[@]}"; do
			for mode in "${MODES[@]}"; do
				skip "$target" "$mode" "$script" && continue
				[ "$script.$mode" = select.simple ] || [ "$script.$mode" = select.extended ] && continue
				# shellcheck disable=SC2086
				res "cpu_us_per_txn.$script.$mode.$target" "$(median ${CPU_US[$script.$mode.$target]:-})"
			done
		done
		res "syscalls_per_txn.select.simple.$target" "${sc:-n/a}"
		res "syscalls_top.select.simple.$target" "${SYSCALL_TOP[$target]:-}"
		res "strace_run_tps.$target" "${STRACE_TPS[$target]:-n/a}"
		[ -z "${STRACE_ERR[$target]:-}" ] || res "error.strace.$target" "${STRACE_ERR[$target]}"
	done

	echo
	echo "memory, shardgate with idle clients (raw-socket StartupMessage + ReadyForQuery, kept open):"
	per=n/a
	if [ -n "$IDLE_RSS" ] && [ -n "$IDLE_RSS_BEFORE" ] && [ "${IDLE_READY:-0}" -gt 0 ]; then
		per=$(awk -v a="$IDLE_RSS" -v b="$IDLE_RSS_BEFORE" -v n="$IDLE_READY" 'BEGIN { printf "%.1f", (a - b) / n }')
	fi
	echo "  clients ready: ${IDLE_READY:-?} of $IDLE_CLIENTS (failed ${IDLE_FAILED:-?}; opened in ${IDLE_OPEN_S:-?} s; proxy fds ${IDLE_FDS:-?})"
	[ -z "$IDLE_ERROR" ] || echo "  first failure: $IDLE_ERROR"
	echo "  VmRSS before: $(mib "$IDLE_RSS_BEFORE") MiB   with the idle clients: $(mib "$IDLE_RSS") MiB" \
		"  (${per} KiB per client)   after closing them: $(mib "$IDLE_RSS_AFTER") MiB"
	res idle_clients.requested "$IDLE_CLIENTS"
	res idle_clients.ready "${IDLE_READY:-0}"
	res idle_clients.failed "${IDLE_FAILED:-?}"
	res idle_clients.seconds_to_open "${IDLE_OPEN_S:-n/a}"
	[ -z "$IDLE_ERROR" ] || res error.idle_clients "$IDLE_ERROR"
	res rss_mib.shardgate.before_idle_clients "$(mib "$IDLE_RSS_BEFORE")"
	res rss_mib.shardgate.with_idle_clients "$(mib "$IDLE_RSS")"
	res rss_mib.shardgate.after_idle_clients "$(mib "$IDLE_RSS_AFTER")"
	res rss_kib_per_idle_client.shardgate "$per"

	nerr=0
	for key in "${!ERRS[@]}"; do nerr=$((nerr + 1)); done
	if [ $nerr -gt 0 ] || [ ${#EVENTS[@]} -gt 0 ] || [ -n "${C1_ERR[shardgate]}${C1_ERR[pgbouncer]}${C1_ERR[direct]}" ]; then
		echo
		echo "errors (pgbench logs in $LOGS):"
		for key in $(printf '%s\n' "${!ERRS[@]}" | sort); do
			printf '%s' "${ERRS[$key]}" | sed "s/^/  $key: /"
		done
		for target in "${C1_TARGETS[@]}"; do
			[ -z "${C1_ERR[$target]}" ] || echo "  c1.$target: ${C1_ERR[$target]}"
		done
		for e in "${EVENTS[@]}"; do
			echo "  $e"
		done
	fi
	res shardgate.starts "$SG_STARTS"
	res shardgate.exit_status_on_sigint "$SG_FINAL_EXIT"
	res shardgate-split.starts "$SGS_STARTS"
	res shardgate-split.exit_status_on_sigint "$SGS_FINAL_EXIT"
	for i in "${!EVENTS[@]}"; do
		res "event.$((i + 1))" "${EVENTS[$i]}"
	done
	echo
	echo "shardgate was started $SG_STARTS time(s); exit status on SIGINT at the end: $SG_FINAL_EXIT"
	echo "shardgate-split was started $SGS_STARTS time(s); exit status on SIGINT at the end: $SGS_FINAL_EXIT"
	echo "total run time: $((ELAPSED / 60)) min $((ELAPSED % 60)) s; results: $RESULTS; logs: $LOGS"
} >"$REP"
cp "$REP" "$REPORT"
cat "$REPORT"

# --- 8. routing micro-benchmark (no servers needed) --------------------------------------
# The cost of deciding where a statement runs: cached analysis + classification + node
# choice, and the same with a fresh parse.
echo
echo "routing decision cost (tests/bench/route_bench.c):"
# shellcheck disable=SC2046
if cc -std=c11 -O2 -D_GNU_SOURCE -Isrc tests/bench/route_bench.c src/analyze/*.c \
	src/route/route.c src/config/config.c src/health/*.c src/core/log.c \
	$(pkg-config --cflags --libs yaml-0.1 libpq libprotobuf-c) -lpg_query -lpthread \
	-o "$OUT/route_bench" 2>"$OUT/route_bench.log"; then
	"$OUT/route_bench" | tee -a "$REPORT" | sed 's/^/  /'
else
	echo "  could not build route_bench (see $OUT/route_bench.log)"
fi
