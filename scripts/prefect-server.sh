#!/usr/bin/env bash
# Start a Prefect server backed by PostgreSQL, in its own database (created when missing).
# Prefect's default SQLite database locks under load ("database is locked", 503s, runs crashed
# with "Failed to submit flow run to infrastructure"), so Steward's server always runs on
# PostgreSQL. `make prefect-server` runs this script; the end-to-end tests start their servers
# with it too. Settings (environment variables, defaults in brackets):
#   PREFECT_PG_URL      the PostgreSQL server, postgresql://USER[:PASSWORD]@HOST:PORT
#                       [postgresql://postgres@127.0.0.1:5432]
#   PREFECT_DB          the Prefect server's own database (never the application's) [prefect]
#   PREFECT_HOST, PREFECT_PORT   where the API listens [127.0.0.1, 4200]
#   PREFECT_PUBLIC_URL  how browsers and workers reach it [http://PREFECT_HOST:PREFECT_PORT]
#   PREFECT_BIN         the prefect command [.venv/bin/prefect of this checkout]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
pg=${PREFECT_PG_URL:-postgresql://postgres@127.0.0.1:5432}
db=${PREFECT_DB:-prefect}
host=${PREFECT_HOST:-127.0.0.1}
port=${PREFECT_PORT:-4200}
public=${PREFECT_PUBLIC_URL:-http://$host:$port}
bin=${PREFECT_BIN:-$here/.venv/bin/prefect}

if [[ ! $db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
  echo "prefect-server: PREFECT_DB=$db: use letters, digits and _ only" >&2
  exit 2
fi
if [[ ! -x $bin ]]; then
  echo "prefect-server: $bin not found; run \`make venv\` first (or set PREFECT_BIN)" >&2
  exit 2
fi
# psql quotes the name itself (:'db' as a literal, :"db" as an identifier).
exists=$(psql "$pg/postgres" -v ON_ERROR_STOP=1 -v db="$db" -At \
  <<< "SELECT 1 FROM pg_database WHERE datname = :'db'")
if [[ $exists != 1 ]]; then
  psql "$pg/postgres" -v ON_ERROR_STOP=1 -v db="$db" -q <<< 'CREATE DATABASE :"db"'
  echo "prefect-server: created database $db"
fi

export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://${pg#postgresql://}/$db"
# The UI calls the API at PREFECT_UI_API_URL (unset on a non-default address: "Can't connect
# to Server API"); notifications link runs through the UI address derived from PREFECT_API_URL.
export PREFECT_API_URL="$public/api"
export PREFECT_UI_API_URL="$public/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
exec "$bin" server start --host "$host" --port "$port"
