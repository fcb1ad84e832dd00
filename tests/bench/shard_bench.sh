#!/usr/bin/env bash
# tests/bench/shard_bench.sh: the cost of sharding, measured (a report; nothing asserts).
#
#   1. starts its own cluster (tests/cluster.sh, base port 30432): shards s0 and s1;
#   2. table sg_bench (id bigint primary key, v int), hash-sharded on id over 16 buckets,
#      200,000 rows placed on s0 and s1 by PostgreSQL's partition hash (half each), and
#      sg_bench_all on s0 holding all 200,000 rows (the unsharded baseline);
#   3. point queries (SELECT v FROM ... WHERE id = :id, random ids), pgbench -c 16 -j 2
#      -M simple|extended|prepared, BENCH_SECONDS each: straight to s0 (sg_bench_all), and
#      through shardgate (sg_bench, each query routed to its shard);
#   4. SELECT count(*), pgbench -c 1: through shardgate over both shards (merged) vs
#      straight to s0 over sg_bench_all (the same 200,000 rows on one server);
#   5. writes build/bench/shards.txt.
# Environment: BENCH_SECONDS (10). About 2 minutes with the default.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd -P)
SECS=${BENCH_SECONDS:-10}
BASE=30432
S1=$((BASE + 3))
SG_PORT=31432
OUT=$REPO/build/bench
LOGS=$OUT/logs
mkdir -p "$LOGS"
PGBIN=/usr/lib/postgresql/15/bin
export PGPASSWORD=postgres

pg() { "$PGBIN/psql" -X -q -At -h 127.0.0.1 -U postgres -d app -p "$@"; }

sg_pid=
cleanup() {
	[ -n "$sg_pid" ] && kill -INT "$sg_pid" 2>/dev/null && wait "$sg_pid" 2>/dev/null
	tests/cluster.sh stop --base-port $BASE >/dev/null 2>&1 || true
}
trap cleanup EXIT

tests/cluster.sh start --base-port $BASE >"$LOGS/shard-cluster.log" 2>&1
bucket="(((hashint8extended(g::bigint, 8816678312871386365)::numeric + 5305509591434766563) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616) % 16 % 2"
for i in 0 1; do
	port=$BASE
	[ $i = 1 ] && port=$S1
	pg "$port" -c "DROP TABLE IF EXISTS sg_bench, sg_bench_all" \
		-c "CREATE TABLE sg_bench (id bigint PRIMARY KEY, v int)" \
		-c "INSERT INTO sg_bench SELECT g, g % 1000 FROM generate_series(1, 200000) g WHERE $bucket = $i" \
		-c "VACUUM ANALYZE sg_bench"
done
pg $BASE -c "CREATE TABLE sg_bench_all AS SELECT g::bigint AS id, g % 1000 AS v FROM generate_series(1, 200000) g" \
	-c "ALTER TABLE sg_bench_all ADD PRIMARY KEY (id)" -c "VACUUM ANALYZE sg_bench_all"

cat >"$OUT/shards.yaml" <<YAML
listen: 127.0.0.1:$SG_PORT
workers: 2
pool: { mode: transaction, size: 20 }
log: { level: warning }
auth: { method: trust }
backend: { user: postgres, password: postgres }
routing: { read_write_split: false }
shards:
  - { name: s0, primary: 127.0.0.1:$BASE }
  - { name: s1, primary: 127.0.0.1:$S1 }
tables:
  sg_bench: { key: id, strategy: hash, buckets: 16 }
YAML
./shardgate -c "$OUT/shards.yaml" >"$LOGS/shard-proxy.log" 2>&1 &
sg_pid=$!
for _ in $(seq 1 50); do
	pg_isready -q -h 127.0.0.1 -p $SG_PORT && break
	sleep 0.1
done

echo '\set id random(1, 200000)' >"$OUT/point.sql"
echo 'SELECT v FROM sg_bench WHERE id = :id;' >>"$OUT/point.sql"
echo '\set id random(1, 200000)' >"$OUT/point_all.sql"
echo 'SELECT v FROM sg_bench_all WHERE id = :id;' >>"$OUT/point_all.sql"
echo 'SELECT count(*) FROM sg_bench;' >"$OUT/count.sql"
echo 'SELECT count(*) FROM sg_bench_all;' >"$OUT/count_all.sql"

run() { # port script mode clients -> "tps latency_ms"
	"$PGBIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -f "$2" -M "$3" -c "$4" -j "$(( $4 > 1 ? 2 : 1 ))" \
		-T "$SECS" app 2>>"$LOGS/shard-pgbench.err" |
		awk '/^tps/ {tps=$3} /^latency average/ {lat=$4} END {printf "%d %s", tps, lat}'
}

{
	echo "shardgate over 2 shards (hash, 16 buckets), 200,000 rows; ${SECS}s per run"
	printf '%-34s %12s %12s %8s\n' "point query, 16 clients" "direct tps" "shardgate" "ratio"
	for mode in simple extended prepared; do
		read -r d _ <<<"$(run $BASE "$OUT/point_all.sql" $mode 16)"
		read -r s _ <<<"$(run $SG_PORT "$OUT/point.sql" $mode 16)"
		printf '%-34s %12s %12s %8s\n' "-M $mode" "$d" "$s" "$(awk -v a="$s" -v b="$d" 'BEGIN {printf "%.2f", b ? a / b : 0}')"
	done
	read -r _ dl <<<"$(run $BASE "$OUT/count_all.sql" simple 1)"
	read -r _ sl <<<"$(run $SG_PORT "$OUT/count.sql" simple 1)"
	echo "count(*) of 200,000 rows, 1 client: one server directly ${dl} ms, shardgate over 2 shards ${sl} ms"
} | tee "$OUT/shards.txt"
