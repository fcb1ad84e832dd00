#!/usr/bin/env bash
# pgbench through the proxy: 16 clients, TPC-B-like and select-only, in
# simple, extended and prepared protocol modes; every transaction must
# succeed, and the balances must add up afterwards (TPC-B keeps
# sum(abalance) = sum(bbalance) = sum(tbalance) = sum(history.delta)).
set -euo pipefail
: "${SG_HOST:?}" "${SG_PORT:?}" "${PGTEST_DSN:?}"
export PGPASSWORD=postgres
db=app
direct=(psql "$PGTEST_DSN" -XAtq -v ON_ERROR_STOP=1)

pgbench -i -s 2 -q -h 127.0.0.1 -p "${PGTEST_BASE_PORT:?}" -U postgres "$db" >/dev/null 2>&1

seconds=${PGBENCH_SECONDS:-4}
status=0
for script in tpcb select-only; do
	for mode in simple extended prepared; do
		args=(-n -c 16 -j 2 -T "$seconds" -M "$mode" -h "$SG_HOST" -p "$SG_PORT" -U postgres)
		[ "$script" = select-only ] && args+=(-S)
		out=$(pgbench "${args[@]}" "$db" 2>&1) || {
			echo "pgbench $script -M $mode exited non-zero:"
			echo "$out" | tail -20
			status=1
			continue
		}
		processed=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
		failed=$(echo "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
		tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
		if [ -z "$processed" ] || [ "$processed" -eq 0 ] || [ "${failed:-1}" -ne 0 ] ||
			echo "$out" | grep -q "error"; then
			echo "pgbench $script -M $mode: expected >0 transactions and 0 failures, got processed=$processed failed=$failed"
			echo "$out" | tail -20
			status=1
		else
			echo "pgbench $script -M $mode: $processed transactions, 0 failed, tps $tps"
		fi
	done
done

sums=$("${direct[@]}" -c "select (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches), (select sum(tbalance) from pgbench_tellers), (select coalesce(sum(delta),0) from pgbench_history)")
IFS='|' read -r a b t h <<<"$sums"
if [ "$a" != "$b" ] || [ "$b" != "$t" ] || [ "$t" != "$h" ]; then
	echo "TPC-B invariant broken: accounts=$a branches=$b tellers=$t history=$h"
	status=1
else
	echo "TPC-B balances agree: $a"
fi
exit $status
