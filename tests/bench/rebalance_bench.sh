#!/usr/bin/env bash
# tests/bench/rebalance_bench.sh: how fast `shardgate rebalance` moves rows (a report;
# nothing asserts).
#
#   1. starts its own cluster (tests/cluster.sh, base port 32432): shards s0, s1 and s2;
#   2. table rb_bench (id bigint primary key, v int, payload text of 80 bytes) with
#      BENCH_ROWS rows (1,000,000) all on s0 (OLD places the 8 buckets on s0 only);
#   3. runs one proxy with OLD and `rebalance apply` to NEW, which puts every bucket on s2
#      (all the rows), while pgbench writes through the proxy (updates of random ids);
#   4. reports rows and bytes moved, copy time, rows/s and MB/s, the cut-over pause, the
#      settling time and the slowest pgbench statement, in build/bench/rebalance.txt.
# Environment: BENCH_ROWS (1000000). About a minute with the default.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd -P)
ROWS=${BENCH_ROWS:-1000000}
BASE=32432
SG_PORT=33432
OUT=$REPO/build/bench
LOGS=$OUT/logs
WORK=$OUT/rebalance
mkdir -p "$LOGS" "$WORK"
rm -f "$WORK"/pgbench.*
PGBIN=/usr/lib/postgresql/15/bin
export PGPASSWORD=postgres

pg() { "$PGBIN/psql" -X -q -At -h 127.0.0.1 -U postgres -d app -p "$@"; }

sg_pid=
cleanup() {
	[ -n "$sg_pid" ] && kill -INT "$sg_pid" 2>/dev/null && wait "$sg_pid" 2>/dev/null
	tests/cluster.sh stop --base-port $BASE >/dev/null 2>&1 || true
}
trap cleanup EXIT

tests/cluster.sh start --base-port $BASE >"$LOGS/rebalance-cluster.log" 2>&1
for port in $BASE $((BASE + 3)) $((BASE + 4)); do
	pg "$port" -c "DROP TABLE IF EXISTS rb_bench; DROP SCHEMA IF EXISTS shardgate CASCADE"
	for s in $(pg "$port" -c "SELECT subname FROM pg_subscription"); do
		pg "$port" -c "ALTER SUBSCRIPTION $s DISABLE; ALTER SUBSCRIPTION $s SET (slot_name = NONE); DROP SUBSCRIPTION $s"
	done
	for s in $(pg "$port" -c "SELECT pubname FROM pg_publication"); do
		pg "$port" -c "DROP PUBLICATION $s"
	done
done
pg $BASE -c "CREATE TABLE rb_bench (id bigint PRIMARY KEY, v int NOT NULL, payload text)"
pg $BASE -c "INSERT INTO rb_bench SELECT g, 0, repeat('x', 80) FROM generate_series(1, $ROWS) g"
pg $BASE -c "VACUUM ANALYZE rb_bench"

write_map() { # file placement
	cat >"$1" <<YAML
listen: 127.0.0.1:$SG_PORT
workers: 2
pool: { mode: transaction, size: 20 }
log: { level: warning }
auth: { method: trust }
admin: { users: [postgres] }
backend: { user: postgres, password: postgres, database: app }
shards:
  - { name: s0, primary: 127.0.0.1:$BASE }
  - { name: s1, primary: 127.0.0.1:$((BASE + 3)) }
  - { name: s2, primary: 127.0.0.1:$((BASE + 4)) }
tables:
  rb_bench: { key: id, strategy: hash, buckets: 8, placement: [$2] }
YAML
}
write_map "$WORK/old.yaml" "s0, s0, s0, s0, s0, s0, s0, s0"
write_map "$WORK/new.yaml" "s2, s2, s2, s2, s2, s2, s2, s2"

build/release/shardgate -c "$WORK/old.yaml" >"$LOGS/rebalance-proxy.log" 2>&1 &
sg_pid=$!
for _ in $(seq 1 100); do
	pg_isready -q -h 127.0.0.1 -p $SG_PORT && break
	sleep 0.1
done

echo "\\set id random(1, $ROWS)
UPDATE rb_bench SET v = v + 1 WHERE id = :id;" >"$WORK/update.sql"
"$PGBIN/pgbench" -n -h 127.0.0.1 -p $SG_PORT -U postgres -c 4 -j 2 -T 600 -M simple \
	-f "$WORK/update.sql" -l --log-prefix="$WORK/pgbench" app >"$WORK/pgbench.out" 2>&1 &
pgbench_pid=$!
sleep 2
build/release/shardgate rebalance plan -c "$WORK/old.yaml" --to "$WORK/new.yaml" >"$WORK/plan.txt"
start=$(date +%s%N)
build/release/shardgate rebalance apply -c "$WORK/old.yaml" --to "$WORK/new.yaml" \
	--proxy 127.0.0.1:$SG_PORT >"$WORK/apply.jsonl"
end=$(date +%s%N)
sleep 1
kill -TERM $pgbench_pid 2>/dev/null || true
wait $pgbench_pid 2>/dev/null || true
build/release/shardgate rebalance verify -c "$WORK/new.yaml" >"$WORK/verify.txt" && verified=yes || verified=NO

read -r rows copy_ms pause_ms < <(pg $BASE -F ' ' -c \
	"SELECT rows_moved, copy_ms, pause_ms FROM shardgate.rebalance_units ORDER BY run_id DESC LIMIT 1")
mb=$(grep -m1 ' rows, ' "$WORK/plan.txt" | sed 's/.* rows, \([0-9.]*\) MB/\1/')
slowest_us=$(cat "$WORK"/pgbench.* 2>/dev/null | awk '{ if ($3 > m) m = $3 } END { print m + 0 }')
{
	echo "rebalance of $ROWS rows (rb_bench, 8 buckets) moving every bucket from s0 to s2, 4 pgbench writers running"
	echo "rows moved:        $rows ($mb MB of row data)"
	echo "copy (initial sync and catch-up): $copy_ms ms = $(awk -v r="$rows" -v ms="$copy_ms" 'BEGIN { printf "%.0f", r / (ms / 1000) }') rows/s, $(awk -v mb="$mb" -v ms="$copy_ms" 'BEGIN { printf "%.1f", mb / (ms / 1000) }') MB/s"
	echo "whole apply:       $(((end - start) / 1000000)) ms"
	echo "cut-over pause:    $pause_ms ms (statements on rb_bench wait this long at most)"
	echo "settling:          $(grep -o '"phase":"settled".*' "$WORK/apply.jsonl" | sed 's/.*"detail":"\([0-9]*\) ms".*/\1/') ms (verify and delete on the source; only statements without a key on rb_bench wait)"
	echo "slowest pgbench statement during the run: $((slowest_us / 1000)) ms"
	echo "verify after:      $verified"
} | tee "$OUT/rebalance.txt"
