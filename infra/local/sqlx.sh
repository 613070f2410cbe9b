#!/usr/bin/env bash
# The compile-time checked SQL's query cache (`.sqlx/`), kept in step with `sql/*.sql` and
# infra/migrations. Builds read the cache (SQLX_OFFLINE in .cargo/config.toml), never a
# database, so this is the one place the queries meet one:
#
#   sqlx.sh prepare   migrate a scratch database from nothing, check every query against it
#                     and rewrite .sqlx/ (commit the result)
#   sqlx.sh check     the same, but fail if .sqlx/ differs from what prepare would write
#
# sqlx-cli (the sqlx project's own tool, pinned to the workspace's sqlx) is installed once per
# machine into ADWORKERS_CACHE. Its `migrate` applies the migrations, not devtools: devtools
# is built from the very queries being prepared.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE="${ADWORKERS_CACHE:-$HOME/.cache/adworkers}"
SQLX_VERSION="0.9.0"
TOOL="$CACHE/sqlx-cli-$SQLX_VERSION"
SCRATCH_DB="${SQLX_SCRATCH_DB:-adworkers_sqlx}"

if [ ! -x "$TOOL/bin/cargo-sqlx" ]; then
  printf -- '-- installing sqlx-cli %s into %s (once per machine)\n' "$SQLX_VERSION" "$TOOL"
  cargo install --locked --quiet sqlx-cli --version "$SQLX_VERSION" \
    --no-default-features --features postgres,rustls --root "$TOOL"
fi
export PATH="$TOOL/bin:$PATH"

host="postgres://postgres:postgres@${PGHOST:-127.0.0.1}:${PGPORT:-5432}"
export DATABASE_URL="$host/$SCRATCH_DB"
cd "$ROOT"
sqlx database drop -y >/dev/null
sqlx database create
sqlx migrate run --source infra/migrations >/dev/null

case "${1:-}" in
  prepare) cargo sqlx prepare --workspace ;;
  check) cargo sqlx prepare --workspace --check ;;
  *) printf 'usage: %s prepare|check\n' "$0" >&2; exit 2 ;;
esac
