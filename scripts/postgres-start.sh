#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 server for tests and prints its connection string (one line on
# stdout; everything else goes to stderr).
#   usage: scripts/postgres-start.sh [DIR]      stop with: scripts/postgres-stop.sh DIR
# DIR (default: a new temp dir) holds the cluster, its log and its unix socket. Trust auth on
# 127.0.0.1 only, fsync off: the data is thrown away afterwards. PRETRAIN_POSTGRES_LISTEN=ADDR listens
# on ADDR instead and trusts its /24 (a server "on another host" of the network-namespace tests).
# Exit 3 means the PostgreSQL binaries cannot be found or installed (callers may skip on it).
set -euo pipefail

BIN=${PRETRAIN_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
if [[ ! -x "$BIN/initdb" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "postgres-start: installing postgresql with apt-get" >&2
    apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; } || true
fi
if [[ ! -x "$BIN/initdb" ]]; then
    echo "postgres-start: PostgreSQL 15 binaries not found in $BIN (install the Debian package postgresql)" >&2
    exit 3
fi

DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/pretrain-postgres.XXXXXX")}
LISTEN=${PRETRAIN_POSTGRES_LISTEN:-127.0.0.1}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# PostgreSQL refuses to run as root: run it as the postgres user the Debian package creates.
RUN=()
if [[ $(id -u) == 0 ]]; then
    chown -R postgres:postgres "$DIR"
    RUN=(runuser -u postgres --)
fi
cd "$DIR" # the server user must be able to read its working directory

# A free port: the first in a random range that nothing answers on.
PORT=
for _ in $(seq 1 50); do
    candidate=$(shuf -i 20000-60000 -n 1)
    if ! (exec 3<>"/dev/tcp/$LISTEN/$candidate") 2>/dev/null; then PORT=$candidate; break; fi
done
[[ -n $PORT ]] || { echo "postgres-start: no free port found" >&2; exit 1; }

"${RUN[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
if [[ $LISTEN != 127.0.0.1 ]]; then
    echo "host all all ${LISTEN%.*}.0/24 trust" >> "$DIR/data/pg_hba.conf"
fi
"${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 \
    -o "-p $PORT -c listen_addresses=$LISTEN -c unix_socket_directories='$DIR' -c fsync=off" start >&2 \
    || { cat "$DIR/postgres.log" >&2; exit 1; }
"${RUN[@]}" "$BIN/createdb" -h "$LISTEN" -p "$PORT" -U postgres pretrain_test >&2

echo "postgres-start: server in $DIR on port $PORT (stop with scripts/postgres-stop.sh $DIR)" >&2
echo "Host=$LISTEN;Port=$PORT;Database=pretrain_test;Username=postgres"
