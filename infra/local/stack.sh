#!/usr/bin/env bash
# The local stack: PostgreSQL, Redis, Tansu (Kafka API) and moto (AWS APIs), all on 127.0.0.1.
#
#   stack.sh up     start what is not running (installing what is missing), migrate, provision
#   stack.sh down   stop only what `up` started
#   stack.sh env    print the shell exports for the stack
#
# Idempotent: a second `up` finds everything running and changes nothing. Tools are cached
# outside the work tree (ADWORKERS_CACHE, default ~/.cache/adworkers) so fresh clones reuse them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE="$ROOT/.stack"
RUN="$STATE/run"
LOGS="$STATE/log"
CACHE="${ADWORKERS_CACHE:-$HOME/.cache/adworkers}"
VENV="$CACHE/venv"
LINT_VENV="$CACHE/lint"
FUZZ_VENV="$CACHE/fuzz"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

DB_NAME="${DB_NAME:-adworkers}"
MOTO_PORT="${MOTO_PORT:-5000}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
TANSU_VERSION="0.6.0"

# Local-only credentials: trust auth ignores the password; a fresh install gets it set below.
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGPASSWORD=postgres
export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$DB_NAME"
export REDIS_URL="redis://127.0.0.1:6379"
export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_REGION=ap-northeast-2 AWS_DEFAULT_REGION=ap-northeast-2
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export SAM_CLI_TELEMETRY=0

say() { printf '%s\n' "$*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 120); do listening "$port" && return 0; sleep 0.5; done
  say "!! $what did not start listening on 127.0.0.1:$port (logs: $LOGS)"; exit 1
}
apt_install() {
  if [ "$(id -u)" != 0 ]; then say "!! $* missing and not root: install it"; exit 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

postgres_up() {
  if ! listening 5432; then
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
      say "-- installing PostgreSQL"; apt_install postgresql
      # Debian's cluster asks TCP clients for a password: give postgres the local one.
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
      su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\""
    else
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    fi
    touch "$RUN/postgres.started"
    wait_port 5432 PostgreSQL
  fi
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
  if [ "$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    psql -d postgres -qc "CREATE DATABASE $DB_NAME"
  fi
  (cd "$ROOT" && cargo run -q -p devtools -- migrate)
  say "postgres   127.0.0.1:5432  database $DB_NAME"
}

redis_up() {
  if ! listening 6379; then
    command -v redis-server >/dev/null || { say "-- installing Redis"; apt_install redis-server; }
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir "$STATE" --logfile "$LOGS/redis.log" --pidfile "$RUN/redis.pid"
    touch "$RUN/redis.started"
    wait_port 6379 Redis
  fi
  say "redis      127.0.0.1:6379"
}

tansu_up() {
  local tansu="$CARGO_BIN/tansu"
  if [ ! -x "$tansu" ]; then
    say "-- installing Tansu $TANSU_VERSION (cargo install, about 10 minutes once)"
    cargo install --locked --quiet tansu --version "$TANSU_VERSION" --features dynostore
  fi
  if ! listening "$KAFKA_PORT"; then
    nohup "$tansu" broker --storage-engine memory://tansu/ \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" >"$LOGS/tansu.log" 2>&1 &
    echo $! >"$RUN/tansu.pid"
    wait_port "$KAFKA_PORT" Tansu
  fi
  local existing
  existing=$("$tansu" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" 2>/dev/null || true)
  "$VENV/bin/python" "$ROOT/infra/local/provision.py" --topics | while read -r topic partitions; do
    [ -n "$topic" ] || continue
    grep -qF -- "\"name\":\"$topic\"" <<<"$existing" || "$tansu" topic create "$topic" \
      --partitions "${partitions:-3}" --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null
  done
  say "kafka      127.0.0.1:$KAFKA_PORT (Tansu, in memory), topics from template.yaml"
}

# A virtualenv at $1 with the pinned requirements file $2, reinstalled when the file changes.
venv_up() {
  local dir=$1 requirements="$ROOT/infra/local/$2" what=$3
  if ! cmp -s "$requirements" "$dir/.requirements" 2>/dev/null; then
    say "-- installing $what into $dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    "$dir/bin/pip" install -q -r "$requirements"
    cp "$requirements" "$dir/.requirements"
  fi
}

moto_up() {
  if ! listening "$MOTO_PORT"; then
    # moto's server with its queue-depth fix (see the launcher's docstring).
    nohup "$VENV/bin/python" "$ROOT/infra/local/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT" \
      >"$LOGS/moto.log" 2>&1 &
    echo $! >"$RUN/moto.pid"
    wait_port "$MOTO_PORT" moto
  fi
  say "aws (moto) $AWS_ENDPOINT_URL, resources from template.yaml:"
  "$VENV/bin/python" "$ROOT/infra/local/provision.py"
}

up() {
  mkdir -p "$RUN" "$LOGS"
  venv_up "$VENV" requirements.txt "local tooling (moto, cargo-lambda, zig, SAM CLI)"
  # checkov pins boto3 and friends apart from the tooling: its own virtualenv.
  venv_up "$LINT_VENV" requirements-lint.txt checkov
  # schemathesis (the admin API's fuzzer) pins hypothesis and jsonschema: its own too.
  venv_up "$FUZZ_VENV" requirements-fuzz.txt schemathesis
  postgres_up
  redis_up
  tansu_up
  moto_up
  "$VENV/bin/python" "$ROOT/infra/local/jwt_keys.py" "$STATE/jwt"
  say "tokens     local issuer's key and JWKS in .stack/jwt (RS256)"
  say "stack is up; exports: eval \"\$(infra/local/stack.sh env)\""
}

stop_pid() {
  local name=$1 file="$RUN/$1.pid"
  [ -f "$file" ] || return 0
  kill "$(cat "$file")" 2>/dev/null && say "stopped $name" || true
  rm -f "$file"
}

down() {
  [ -d "$RUN" ] || { say "nothing was started by make up"; return; }
  stop_pid moto
  stop_pid tansu
  if [ -f "$RUN/redis.started" ]; then
    redis-cli -h 127.0.0.1 shutdown nosave >/dev/null 2>&1 || true
    rm -f "$RUN/redis.started" "$RUN/redis.pid"; say "stopped redis"
  fi
  if [ -f "$RUN/postgres.started" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main stop || true
    rm -f "$RUN/postgres.started"; say "stopped postgres"
  fi
}

env_exports() {
  for name in PGHOST PGPORT PGUSER PGPASSWORD DATABASE_URL REDIS_URL KAFKA_BROKERS AWS_ENDPOINT_URL \
              AWS_REGION AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY SAM_CLI_TELEMETRY; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done
  printf 'export PATH=%q:%q:%q:%q:"$PATH"\n' "$VENV/bin" "$CARGO_BIN" "$LINT_VENV/bin" "$FUZZ_VENV/bin"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_exports ;;
  *) say "usage: $0 up|down|env"; exit 2 ;;
esac
