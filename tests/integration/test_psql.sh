#!/usr/bin/env bash
# test_psql.sh: psql through the proxy: multi-statement strings, \copy in and
# out, an error in the middle of a multi-statement string, BEGIN/ROLLBACK from
# a script, ON_ERROR_STOP, and a unicode round trip.
set -uo pipefail

: "${SG_DSN:?run through tests/run-all.sh}"
mode=${SG_POOL_MODE:-transaction}
t="psql_t_${mode}_$$"
t2="psql_err_${mode}_$$"
t3="psql_tx_${mode}_$$"
t4="psql_stop_${mode}_$$"
t5="psql_uni_${mode}_$$"
tmp=$(mktemp -d)
start=$(date +%s%N)

q() { # runs SQL through the proxy, unaligned, tuples only; fails the test on error
	local out
	if ! out=$(timeout 60 psql -X -q -At -v ON_ERROR_STOP=1 "$SG_DSN" -c "$1" 2>&1); then
		echo "FAIL: psql -c \"$1\" failed: $out"
		exit 1
	fi
	printf '%s' "$out"
}

cleanup() {
	timeout 30 psql -X -q "$SG_DSN" -c "drop table if exists $t, $t2, $t3, $t4, $t5" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

expect_eq() { # what expected got
	if [ "$2" != "$3" ]; then
		echo "FAIL: $1"
		echo "  expected: $(printf '%q' "$2")"
		echo "  got:      $(printf '%q' "$3")"
		exit 1
	fi
}

# --- 1. several statements in one -c: every result is shown -----------------
got=$(q "select 1; select 2;")
expect_eq "both results of 'select 1; select 2;'" $'1\n2' "$got"
got=$(q "select 'a' as x; select 'b', 'c'; select 40 + 2;")
expect_eq "three results of one -c string" $'a\nb|c\n42' "$got"

# --- 2. \copy in and out of a normal table, 10,000 rows ----------------------
q "drop table if exists $t; create table $t (id int primary key, name text, amount bigint)" >/dev/null
seq 1 10000 | awk '{ printf "%d\tname %d\t%d\n", $1, $1, $1 * 3 }' >"$tmp/in.tsv"
out=$(timeout 60 psql -X -v ON_ERROR_STOP=1 "$SG_DSN" -c "\\copy $t from '$tmp/in.tsv'" 2>&1) ||
	fail "\\copy from file: $out"
expect_eq "\\copy from command tag" "COPY 10000" "$out"
got=$(q "select count(*), sum(id), sum(amount), count(distinct name) from $t")
expect_eq "count/sums after \\copy in" "10000|50005000|150015000|10000" "$got"
out=$(timeout 60 psql -X -v ON_ERROR_STOP=1 "$SG_DSN" -c "\\copy (select * from $t order by id) to '$tmp/out.tsv'" 2>&1) ||
	fail "\\copy to file: $out"
expect_eq "\\copy to command tag" "COPY 10000" "$out"
if ! cmp -s "$tmp/in.tsv" "$tmp/out.tsv"; then
	echo "FAIL: \\copy out differs from what was copied in"
	diff "$tmp/in.tsv" "$tmp/out.tsv" | head -10
	exit 1
fi
# CSV with a header, out and back in (into a fresh copy of the table).
out=$(timeout 60 psql -X -v ON_ERROR_STOP=1 "$SG_DSN" -c "\\copy $t to '$tmp/out.csv' with (format csv, header)" 2>&1) ||
	fail "\\copy to csv: $out"
expect_eq "csv line count (header + rows)" "10001" "$(wc -l <"$tmp/out.csv" | tr -d ' ')"
q "truncate $t" >/dev/null
out=$(timeout 60 psql -X -v ON_ERROR_STOP=1 "$SG_DSN" -c "\\copy $t from '$tmp/out.csv' with (format csv, header)" 2>&1) ||
	fail "\\copy from csv: $out"
got=$(q "select count(*), sum(id), sum(amount) from $t")
expect_eq "count/sums after csv round trip" "10000|50005000|150015000" "$got"

# --- 3. an error in the middle of a multi-statement string -------------------
# PostgreSQL runs the string as one implicit transaction: the error aborts it,
# the statements after it are not run, and the ones before it are rolled back.
q "drop table if exists $t2; create table $t2 (v int)" >/dev/null
out=$(timeout 30 psql -X -At "$SG_DSN" -c "insert into $t2 values (1); select 1/0; insert into $t2 values (2);" 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "psql exit status after an error in -c: expected non-zero, got 0 (output: $out)"
case "$out" in
*"division by zero"*) ;;
*) fail "expected a 'division by zero' error, got: $out" ;;
esac
got=$(q "select count(*) from $t2")
expect_eq "rows in $t2 after the failed multi-statement string (implicit transaction rolled back)" "0" "$got"
# The same, when the statements before the error committed on their own.
out=$(timeout 30 psql -X -At "$SG_DSN" -c "insert into $t2 values (10); commit; select 1/0; insert into $t2 values (20);" 2>&1)
got=$(q "select coalesce(string_agg(v::text, ',' order by v), '') from $t2")
expect_eq "rows after 'insert; commit; error; insert' (first kept, last not run)" "10" "$got"
# The connection used by the failed string left nothing behind: a new
# session sees an idle, clean state.
got=$(q "select 1/1; select 'after error'")
expect_eq "statements after a failed string" $'1\nafter error' "$got"

# --- 4. BEGIN/ROLLBACK and BEGIN/COMMIT in a script (psql -f) ----------------
q "drop table if exists $t3; create table $t3 (v int)" >/dev/null
cat >"$tmp/tx.sql" <<SQL
BEGIN;
INSERT INTO $t3 SELECT g FROM generate_series(1, 100) g;
SELECT 'inside', count(*) FROM $t3;
SELECT 'status', current_setting('transaction_isolation') <> '' , txid_current_if_assigned() IS NOT NULL;
ROLLBACK;
SELECT 'after rollback', count(*) FROM $t3;
BEGIN;
INSERT INTO $t3 VALUES (7), (8);
COMMIT;
SELECT 'after commit', count(*), sum(v) FROM $t3;
SQL
out=$(timeout 60 psql -X -q -At -v ON_ERROR_STOP=1 "$SG_DSN" -f "$tmp/tx.sql" 2>&1) || fail "psql -f tx.sql: $out"
expect_eq "psql -f transaction script output" $'inside|100\nstatus|t|t\nafter rollback|0\nafter commit|2|15' "$out"
got=$(q "select count(*), sum(v) from $t3")
expect_eq "committed rows seen by a new session" "2|15" "$got"

# --- 5. ON_ERROR_STOP ---------------------------------------------------------
q "drop table if exists $t4; create table $t4 (v int)" >/dev/null
cat >"$tmp/stop.sql" <<SQL
INSERT INTO $t4 VALUES (1);
SELECT no_such_column FROM $t4;
INSERT INTO $t4 VALUES (3);
SQL
# Without ON_ERROR_STOP psql goes on after the error (exit status 0).
out=$(timeout 30 psql -X -At "$SG_DSN" -f "$tmp/stop.sql" 2>&1)
rc=$?
expect_eq "psql -f exit status without ON_ERROR_STOP (output: $out)" "0" "$rc"
case "$out" in
*"no_such_column"*) ;;
*) fail "expected an error about no_such_column, got: $out" ;;
esac
got=$(q "select string_agg(v::text, ',' order by v) from $t4")
expect_eq "rows after a script without ON_ERROR_STOP" "1,3" "$got"
q "truncate $t4" >/dev/null
# With ON_ERROR_STOP=1 psql stops at the error with exit status 3.
out=$(timeout 30 psql -X -At -v ON_ERROR_STOP=1 "$SG_DSN" -f "$tmp/stop.sql" 2>&1)
rc=$?
expect_eq "psql -f exit status with ON_ERROR_STOP=1 (output: $out)" "3" "$rc"
got=$(q "select string_agg(v::text, ',' order by v) from $t4")
expect_eq "rows after a script with ON_ERROR_STOP=1" "1" "$got"
# ON_ERROR_STOP inside an explicit transaction: nothing of it commits.
q "truncate $t4" >/dev/null
printf 'BEGIN;\nINSERT INTO %s VALUES (1);\nSELECT 1/0;\nINSERT INTO %s VALUES (2);\nCOMMIT;\n' "$t4" "$t4" >"$tmp/stop_tx.sql"
out=$(timeout 30 psql -X -At -v ON_ERROR_STOP=1 "$SG_DSN" -f "$tmp/stop_tx.sql" 2>&1)
rc=$?
expect_eq "exit status, ON_ERROR_STOP inside BEGIN (output: $out)" "3" "$rc"
got=$(q "select count(*) from $t4")
expect_eq "rows after an aborted transaction script" "0" "$got"
# Without ON_ERROR_STOP the rest of the aborted transaction is refused and
# COMMIT turns into ROLLBACK.
out=$(timeout 30 psql -X -At "$SG_DSN" -f "$tmp/stop_tx.sql" 2>&1)
case "$out" in
*"current transaction is aborted"*) ;;
*) fail "expected 'current transaction is aborted' for the statement after the error, got: $out" ;;
esac
case "$out" in
*ROLLBACK*) ;;
*) fail "expected COMMIT of an aborted transaction to report ROLLBACK, got: $out" ;;
esac
got=$(q "select count(*) from $t4")
expect_eq "rows after an aborted transaction script without ON_ERROR_STOP" "0" "$got"

# --- 6. unicode round trip ---------------------------------------------------
q "drop table if exists $t5; create table $t5 (id int, s text)" >/dev/null
uni='héllo wörld ✓ Ελληνικά 日本語 🐘 ﷽ «quotes» — end'
out=$(timeout 30 psql -X -q -v ON_ERROR_STOP=1 -v "s=$uni" "$SG_DSN" <<SQL 2>&1
INSERT INTO $t5 VALUES (1, :'s');
SQL
) || fail "insert unicode: $out"
got=$(q "select s from $t5 where id = 1")
expect_eq "unicode text read back" "$uni" "$got"
got=$(q "select length(s), octet_length(s) from $t5 where id = 1")
expected_len=$(printf '%s' "$uni" | wc -m | tr -d ' ')
expected_oct=$(printf '%s' "$uni" | wc -c | tr -d ' ')
# wc -m needs a UTF-8 locale; fall back to python for the character count.
if [ "$expected_len" = "$expected_oct" ]; then
	expected_len=$(printf '%s' "$uni" | /usr/bin/python3 -c 'import sys; print(len(sys.stdin.buffer.read().decode()))')
fi
expect_eq "server-side length/octet_length of the unicode text" "$expected_len|$expected_oct" "$got"
got=$(q "select s = U&'h\\00E9llo' || substr(s, 6) from $t5 where id = 1")
expect_eq "server sees the same code points" "t" "$got"
# Unicode through \copy as well.
printf '2\t%s\n' "$uni" >"$tmp/uni.tsv"
out=$(timeout 30 psql -X -v ON_ERROR_STOP=1 "$SG_DSN" -c "\\copy $t5 from '$tmp/uni.tsv'" 2>&1) || fail "\\copy unicode: $out"
got=$(q "select count(*) from $t5 where s = (select s from $t5 where id = 1)")
expect_eq "rows equal to the unicode text (psql var and \\copy)" "2" "$got"
# A LATIN1 client: the server converts, the proxy passes it through.
got=$(PGCLIENTENCODING=LATIN1 timeout 30 psql -X -At "$SG_DSN" -c "select chr(233) || chr(252), current_setting('client_encoding')" 2>&1 | iconv -f latin1 -t utf-8)
expect_eq "client_encoding LATIN1 session (server converts, proxy passes through)" "éü|LATIN1" "$got"

end=$(date +%s%N)
echo "ok ($(((end - start) / 1000000)) ms, pool mode $mode)"
