#!/usr/bin/env bash
# Installs the Debian packages shardgate builds and tests with, when any is
# missing. Needs root (or passwordless sudo) only when something is missing.
set -euo pipefail

packages=(
	build-essential pkg-config
	libpq-dev libpg-query-dev libprotobuf-c-dev libyaml-dev check libevent-dev libssl-dev
	postgresql-15 postgresql-client-15 pgbouncer
	python3 python3-psycopg python3-asyncpg python3-prometheus-client
	clang libclang-rt-14-dev curl openssl procps
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
	sudo=(sudo -n)
else
	echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's postgresql package creates and starts a default cluster on 5432;
# shardgate's tests run their own servers and need none of it.
if command -v pg_lsclusters >/dev/null; then
	pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
		"${sudo[@]}" pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
	done
fi
