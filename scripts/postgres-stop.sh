#!/usr/bin/env bash
# Stops a server started by scripts/postgres-start.sh DIR and deletes DIR.
#   usage: scripts/postgres-stop.sh DIR
set -euo pipefail

DIR=${1:?usage: postgres-stop.sh DIR}
BIN=${PRETRAIN_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
[[ -d "$DIR" ]] || exit 0

RUN=()
[[ $(id -u) == 0 ]] && RUN=(runuser -u postgres --)
if [[ -f "$DIR/data/postmaster.pid" ]]; then
    (cd "$DIR" && "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >&2) || true
fi
rm -rf "$DIR"
