#!/usr/bin/env bash
# The proxy logs in to PostgreSQL with each method the servers ask for:
# SCRAM-SHA-256 (the postgres user, as every other test does), md5, plain
# password and trust (roles made by tests/cluster.sh with matching pg_hba
# lines), and a wrong password is reported to the client, not hidden.
set -uo pipefail
: "${SG_SHARDGATE:?}" "${SG_CONFIG:?}" "${PGTEST_BASE_PORT:?}"
work=$(dirname "$SG_CONFIG")
base=$PGTEST_BASE_PORT
status=0
port=$((base + 1100))

try_login() { # name user password expected-substring
	local name=$1 user=$2 password=$3 expect=$4
	port=$((port + 1))
	local cfg=$work/backend-auth-$name.yaml log=$work/backend-auth-$name.log
	cat >"$cfg" <<YAML
listen: 127.0.0.1:$port
workers: 1
pool: { mode: transaction, size: 2 }
auth: { method: trust }
backend: { user: $user, password: "$password" }
shards:
  - name: s0
    primary: 127.0.0.1:$base
YAML
	"$SG_SHARDGATE" -c "$cfg" >"$log" 2>&1 &
	local pid=$!
	for _ in $(seq 1 50); do
		pg_isready -q -h 127.0.0.1 -p "$port" -U "$user" -d app && break
		sleep 0.1
	done
	local out
	out=$(psql "host=127.0.0.1 port=$port user=$user dbname=app" -XAtc "select current_user, 6 * 7" 2>&1)
	if grep -q -- "$expect" <<<"$out"; then
		echo "$name: ok ($out)"
	else
		echo "$name: expected \"$expect\", got: $out"
		status=1
	fi
	kill -INT "$pid"
	wait "$pid" || { echo "$name: the proxy did not exit cleanly"; status=1; }
}

try_login scram postgres postgres "postgres|42"
try_login md5 md5user md5pass "md5user|42"
try_login password pwuser pwpass "pwuser|42"
try_login trust trustuser "" "trustuser|42"
try_login wrong-password md5user nope "password authentication failed"
exit $status
