#!/usr/bin/env bash
# The functions end to end on the local stack: `cargo lambda watch` runs them as Lambda would,
# the local event sources (`local-triggers sources`) feed them what producers put on the queues
# and topics, the scheduler source fires the nightly jobs, `cargo lambda invoke` sends them the
# files in events/, and the results are read back from PostgreSQL, Redis, S3 and the completion
# queues.
#
#   e2e.sh test   fresh database, asserts every result (part of make test)
#   e2e.sh demo   the stack's database, prints what changed (make demo)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE="${1:-test}"
eval "$(infra/local/stack.sh env)"
LOGS="$ROOT/.stack/log"
WATCH_PORT="${WATCH_PORT:-9000}"
IMAGE_PORT=8089  # the port the sample events' image URLs name
mkdir -p "$LOGS"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fail() { echo "e2e: FAILED: $*" >&2; echo "--- cargo lambda watch log:" >&2; tail -40 "$LOGS/watch.log" >&2; exit 1; }
peek() { python3 infra/local/peek.py "$@"; }
sql() { psql -d "${DB_NAME:-adworkers}" -X -q -tA -c "$1"; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

if [ "$MODE" = test ]; then
  DB_NAME="e2e_$(date +%s)_$$"
  psql -d postgres -X -qc "CREATE DATABASE $DB_NAME"
  trap 'cleanup; psql -d postgres -X -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" || true' EXIT
  DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$DB_NAME" cargo run -q -p devtools -- migrate >/dev/null
  # Start from empty completion queues (SQS allows one purge a minute, so drain instead).
  peek drain WebtoonCreateCompleteQueue >/dev/null
  peek drain WebtoonUpdateCompleteQueue >/dev/null
fi
export DB_NAME
FUNCTION_DB_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_NAME:-adworkers}"

if ! listening "$IMAGE_PORT"; then
  python3 -m http.server "$IMAGE_PORT" --bind 127.0.0.1 --directory infra/local/images >"$LOGS/images.log" 2>&1 &
  pids+=($!)
fi
# The function reads the env file provision.py derived from template.yaml. Tests point it at
# their own database with DATABASE_URL, which takes precedence over the secret.
# Built before the emulator starts, so the first invoke does not wait for a compile.
cargo build -q $(for f in functions/*/; do printf -- '-p %s ' "$(basename "$f")"; done) --bins
cargo build -q -p devtools -p local-triggers
env_args=(--env-file .stack/functions.env)
[ "$MODE" = test ] && env_args+=(--env-var "DATABASE_URL=$FUNCTION_DB_URL")
cargo lambda watch --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" "${env_args[@]}" >"$LOGS/watch.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do listening "$WATCH_PORT" && listening "$IMAGE_PORT" && break; sleep 0.5; done
listening "$WATCH_PORT" || fail "cargo lambda watch did not start"

invoke() { job webtoon-sync "$1"; }
devtools() { target/debug/devtools "$@"; }
triggers() { LAMBDA_INVOKE_URL="http://127.0.0.1:$WATCH_PORT" target/debug/local-triggers "$@" 2>>"$LOGS/local-triggers.log"; }
# A long-running local-triggers command (a stand-in, a client), stopped on exit: started here,
# not in a subshell, so its own pid is the one kept.
background() { LAMBDA_INVOKE_URL="http://127.0.0.1:$WATCH_PORT" target/debug/local-triggers "$@" & pids+=($!); }
# Every function's queues and topics, until they have been quiet for 4 s.
sources() { triggers sources --idle 4; }
counter_key() { echo "budget:spent:{$1}:$(TZ=Asia/Seoul date +%Y%m%d)"; }
job() {
  cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" --data-file "events/$2" --output-format json \
    2>>"$LOGS/invoke.log" || fail "invoke $1 with events/$2"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# The day the scheduled jobs' sample events name (2026-11-20): hourly windows of campaigns
# 12345 and 12346 (2,400 impressions each), raw events that match for 12345 and fall 20 % short
# for 12346, and their Redis day counters (12345 matches the DB's deductions, 12346 is over).
# Event ids are fixed, so seeding twice adds nothing.
seed_sample_day() {
  sql "SELECT ensure_ad_event_partitions('2026-11-01', '2026-11-01');
       INSERT INTO performance_metrics (campaign_id, advertiser_id, window_size, window_start, window_date,
                                        impressions, clicks, conversions, cost_micros)
         SELECT c, 77, '1h', '2026-11-20 00:00+09'::timestamptz + h * INTERVAL '1 hour', '2026-11-20', 100, 10, 0, 1000000
         FROM generate_series(0, 23) AS h, (VALUES (12345), (12346)) AS v(c)
         ON CONFLICT DO NOTHING;
       INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type, cost_micros, device_id, ip)
         SELECT md5(c || '-' || i)::uuid, '2026-11-20 00:00+09'::timestamptz + (i % 24) * INTERVAL '1 hour', c, 77,
                CASE WHEN i <= 240 THEN 'click' ELSE 'impression' END,
                CASE WHEN i <= 240 THEN 100000 ELSE 0 END, 'device-' || (i % 97), ('198.51.100.' || (i % 200))::inet
         FROM (VALUES (12345, 2640), (12346, 2240)) AS v(c, n), generate_series(1, n) AS i
         ON CONFLICT DO NOTHING" >/dev/null
  redis-cli -u "$REDIS_URL" SET 'budget:spent:{12345}:20261120' 24 >/dev/null
  redis-cli -u "$REDIS_URL" SET 'budget:spent:{12346}:20261120' 30 >/dev/null
}
# The sample campaigns budget-sync pauses or corrects: 12347 spent its whole daily budget.
seed_campaigns() {
  sql "INSERT INTO campaigns (campaign_id, advertiser_id, daily_budget) VALUES
         (12345, 77, 500000), (12346, 77, 500000), (12347, 78, 100000) ON CONFLICT DO NOTHING" >/dev/null
  redis-cli -u "$REDIS_URL" SET "$(counter_key 12346)" 52000 >/dev/null
}
# The sample coupons (events/coupon-issue.json): 3001 has 2 units left, 3002 ended on 15 November.
seed_coupons() {
  sql "INSERT INTO coupons (id, name, total_stock, remaining_stock, valid_from, valid_until) VALUES
         (3001, 'welcome', 2, 2, '2026-11-01 00:00+09', '2026-12-01 00:00+09'),
         (3002, 'autumn', 10, 10, '2026-10-01 00:00+09', '2026-11-15 00:00+09') ON CONFLICT DO NOTHING" >/dev/null
}
coupon_outcomes() { sql "SELECT string_agg(outcome, ' ' ORDER BY request_id) FROM coupon_issue_outcomes"; }
# The CDP backfill's advertisers: Hanbit Foods is NEW (its 24 months to backfill), Mirae Books
# and Sora Travel are EXISTING. Each has a campaign with a daily row for every day of the last
# 25 months; Hanbit and Mirae have raw events yesterday from a few devices.
seed_cdp() {
  sql "INSERT INTO advertisers (advertiser_id, name, advertiser_type, backfill_completed) VALUES
         (501, 'Hanbit Foods', 'NEW', false), (502, 'Mirae Books', 'EXISTING', true),
         (503, 'Sora Travel', 'EXISTING', true) ON CONFLICT DO NOTHING;
       INSERT INTO campaign_daily_stats (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions, cost_micros, hours)
         SELECT a * 10 + 1, d::date, a, 1000 + a % 7 * 100, 40 + a % 5, 4, 12000000, 24
           FROM (VALUES (501), (502), (503)) AS v(a),
                generate_series(date_trunc('month', now() AT TIME ZONE 'Asia/Seoul') - INTERVAL '25 months',
                                (now() AT TIME ZONE 'Asia/Seoul')::date - 1, INTERVAL '1 day') AS d
         ON CONFLICT DO NOTHING;
       SELECT ensure_ad_event_partitions(((now() AT TIME ZONE 'Asia/Seoul')::date - 1), ((now() AT TIME ZONE 'Asia/Seoul')::date - 1));
       INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type, cost_micros, device_id)
         SELECT md5('cdp-' || a || '-' || i)::uuid,
                ((now() AT TIME ZONE 'Asia/Seoul')::date - 1 + INTERVAL '9 hours' + i * INTERVAL '1 minute') AT TIME ZONE 'Asia/Seoul',
                a * 10 + 1, a, CASE WHEN i % 10 = 0 THEN 'click' ELSE 'impression' END, 1500, 'device-' || (i % 4)
           FROM (VALUES (501), (502)) AS v(a), generate_series(1, 40) AS i
         ON CONFLICT DO NOTHING" >/dev/null
}
now_utc() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# The console's users for the sample alert (events/alert-intake.json, bank-api): ops-ana watches
# every bank-api alert in a browser (a WebSocket client, and one stale connection the API will
# call gone), ops-bo its deployments on a phone (a push endpoint in the local SNS), ops-cy only
# shop-api.
WS_PORT=9301
HTTP_PORT=9300
seed_alert_users() {
  sql "INSERT INTO alert_users (user_id) VALUES ('ops-ana'), ('ops-bo'), ('ops-cy') ON CONFLICT DO NOTHING;
       INSERT INTO alert_subscriptions (user_id, app_name, alert_kind) VALUES
         ('ops-ana', 'bank-api', '*'), ('ops-bo', 'bank-api', 'DEPLOYMENT'), ('ops-cy', 'shop-api', '*')
         ON CONFLICT DO NOTHING;
       INSERT INTO ws_connections (connection_id, user_id, connected_at)
         VALUES ('stale-connection', 'ops-ana', now() - interval '1 hour') ON CONFLICT DO NOTHING" >/dev/null
  BO_PHONE=$(peek push-endpoint "ops-bo-phone-${DB_NAME:-adworkers}")
  sql "INSERT INTO push_endpoints (endpoint_arn, user_id, platform) VALUES ('$BO_PHONE', 'ops-bo', 'FCM') ON CONFLICT DO NOTHING" >/dev/null
}
# The WebSocket API's local stand-in, and ops-ana's browser connected to it with her token.
start_websocket() {
  listening "$WS_PORT" && fail "127.0.0.1:$WS_PORT is taken (a WebSocket stand-in left running?)"
  background websocket --listen "127.0.0.1:$WS_PORT" >"$LOGS/websocket.log" 2>&1
  for _ in $(seq 1 40); do listening "$WS_PORT" && break; sleep 0.25; done
  background listen "ws://127.0.0.1:$WS_PORT/?token=$(devtools token ops-ana)" --for 120 >"$LOGS/ws-client.out" 2>&1
  for _ in $(seq 1 40); do [ "$(sql "SELECT count(*) FROM ws_connections WHERE user_id = 'ops-ana' AND connection_id <> 'stale-connection'")" = 1 ] && break; sleep 0.25; done
}
alert_statuses() { sql "SELECT string_agg(user_id || '=' || status, ' ' ORDER BY user_id) FROM user_alert_statuses WHERE alert_id = ${1:-1}"; }
# The HTTP API's local stand-in (routes and JWT authorizer from the template) and a client of it.
start_http_api() {
  listening "$HTTP_PORT" && fail "127.0.0.1:$HTTP_PORT is taken (an HTTP API stand-in left running?)"
  background http --listen "127.0.0.1:$HTTP_PORT" >"$LOGS/http.log" 2>&1
  for _ in $(seq 1 40); do listening "$HTTP_PORT" && break; sleep 0.25; done
}
# POST /v1/alerts with BODY as SUBJECT (no subject: no token; AUDIENCE to override): the status,
# a space, the body.
post_alert() {
  local body=$1 subject=${2:-} audience=${3:-adworkers-ops} auth=()
  [ -n "$subject" ] && auth=(-H "Authorization: Bearer $(devtools token "$subject" --audience "$audience")")
  curl -s -o "$LOGS/post.out" -w '%{http_code}' -X POST "http://127.0.0.1:$HTTP_PORT/v1/alerts" \
    -H 'Content-Type: application/json' "${auth[@]}" --data "$body"
  printf ' %s\n' "$(cat "$LOGS/post.out")"
}
sample_alert() { python3 -c 'import json; print(json.load(open("events/alert-intake.json"))["body"])'; }
# The admin API through the local HTTP API: METHOD PATH as a token with SCOPE (default ops:read;
# none: no token), with BODY and Idempotency-Key KEY if given. Prints the status, a space, the
# body; the headers are in $LOGS/admin.headers.
admin() {
  local method=$1 path=$2 scope=${3:-ops:read} body=${4:-} key=${5:-} args=()
  [ "$scope" != none ] && args+=(-H "Authorization: Bearer $(devtools token "ops-${scope#*:}" --scope "$scope")")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
  [ -n "$key" ] && args+=(-H "Idempotency-Key: $key")
  curl -s -D "$LOGS/admin.headers" -o "$LOGS/admin.out" -w '%{http_code}' -X "$method" \
    "http://127.0.0.1:$HTTP_PORT/v1/admin$path" "${args[@]}"
  printf ' %s\n' "$(cat "$LOGS/admin.out")"
}
# TOONPICK: the local catalog feeds (infra/local/catalog), and a small population of readers
# with known tastes around the sample day: 24 titles (odd ones ROMANCE by 한소희, even ones
# ACTION by 김무열), 60 readers (readers 1-20 read romance, the others action), 6 events each
# over the 20 days before 2026-11-20, and one more read on the day itself.
CATALOG_PORT=8090
start_catalog() {
  if ! listening "$CATALOG_PORT"; then
    python3 -m http.server "$CATALOG_PORT" --bind 127.0.0.1 --directory infra/local/catalog >"$LOGS/catalog.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 40); do listening "$CATALOG_PORT" && break; sleep 0.25; done
  fi
}
seed_readers() {
  sql "INSERT INTO webtoons (platform, external_id, title, status, source_updated_at)
         SELECT 'NAVER', 'reader-demo-' || i, CASE WHEN i % 2 = 1 THEN '로맨스 ' ELSE '액션 ' END || i, 'ONGOING', now()
           FROM generate_series(1, 24) i ON CONFLICT DO NOTHING;
       INSERT INTO genres (name) VALUES ('ROMANCE'), ('ACTION') ON CONFLICT DO NOTHING;
       INSERT INTO authors (name) VALUES ('한소희'), ('김무열') ON CONFLICT DO NOTHING;
       INSERT INTO webtoon_genres (webtoon_id, genre_id)
         SELECT w.id, g.id FROM webtoons w JOIN genres g
           ON g.name = CASE WHEN split_part(w.external_id, '-', 3)::int % 2 = 1 THEN 'ROMANCE' ELSE 'ACTION' END
          WHERE w.external_id LIKE 'reader-demo-%' ON CONFLICT DO NOTHING;
       INSERT INTO webtoon_authors (webtoon_id, author_id, role)
         SELECT w.id, a.id, 'WRITER' FROM webtoons w JOIN authors a
           ON a.name = CASE WHEN split_part(w.external_id, '-', 3)::int % 2 = 1 THEN '한소희' ELSE '김무열' END
          WHERE w.external_id LIKE 'reader-demo-%' ON CONFLICT DO NOTHING;
       INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, episode_number, occurred_at)
         SELECT md5('reader-demo-' || u || '-' || k)::uuid, u, w.id,
                CASE WHEN k = 6 THEN 'like' ELSE 'episode_read' END, CASE WHEN k = 6 THEN NULL ELSE k END,
                '2026-11-20 12:00+09'::timestamptz - ((u + k * 3) % 20 + 1) * INTERVAL '1 day'
           FROM generate_series(1, 60) u CROSS JOIN generate_series(1, 6) k
           JOIN webtoons w ON w.external_id = 'reader-demo-' || (CASE WHEN u <= 20 THEN 1 ELSE 2 END + 2 * ((u * 5 + k * 7) % 12))
         ON CONFLICT DO NOTHING;
       INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, episode_number, occurred_at)
         SELECT md5('reader-demo-day-' || u)::uuid, u, w.id, 'episode_read', 1, '2026-11-20 21:00+09'
           FROM generate_series(1, 60) u
           JOIN webtoons w ON w.external_id = 'reader-demo-' || (CASE WHEN u <= 20 THEN 1 ELSE 2 END + 2 * ((u * 11) % 12))
         ON CONFLICT DO NOTHING" >/dev/null
}
reader_list() {
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off -c \
    "SELECT r.rank, w.title, r.variant, r.reason, coalesce(b.title, r.because) AS because, round(r.score::numeric, 3) AS score
       FROM current_recommendations r JOIN webtoons w ON w.id = r.webtoon_id LEFT JOIN webtoons b ON b.id = r.because_id
      WHERE r.user_id = $1 ORDER BY r.rank LIMIT 10"
}
# The body of an `admin` answer, pretty.
answer() { cut -d' ' -f2- | python3 -m json.tool; }
failures() { python3 -c 'import json,sys; print(" ".join(sorted(f["itemIdentifier"] for f in json.load(sys.stdin)["batchItemFailures"])))'; }
outcomes() { python3 -c 'import json,sys; print(" ".join(sorted(json.loads(l)["outcome"] for l in sys.stdin if l.strip())))'; }

if [ "$MODE" = demo ]; then
  printf '\n$ the webtoon requests of events/ sent to the local queues, as a producer would\n'
  peek send WebtoonCreateRequestQueue events/webtoon-sync-create.json
  peek send WebtoonUpdateRequestQueue events/webtoon-sync-update.json
  peek send WebtoonCreateRequestQueue events/webtoon-sync-mixed-batch.json
  printf '\n$ local-triggers sources --idle 4   (each queue and topic delivered to its function)\n'
  sources
  printf '\n== PostgreSQL (database %s)\n' "${DB_NAME:-adworkers}"
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off -c \
    "SELECT w.id, w.platform, w.external_id, w.title, w.status, w.rating,
            (SELECT count(*) FROM episodes e WHERE e.webtoon_id = w.id) AS episodes,
            (SELECT string_agg(g.name, ',' ORDER BY g.name) FROM webtoon_genres wg JOIN genres g ON g.id = wg.genre_id WHERE wg.webtoon_id = w.id) AS genres,
            w.thumbnail_key IS NOT NULL AS has_thumbnail
       FROM webtoons w ORDER BY w.id" \
    -c "SELECT request_id, kind, outcome, webtoon_id, completion_sent_at IS NOT NULL AS completion_sent FROM webtoon_requests ORDER BY processed_at"
  printf '== S3 (bucket %s)\n' "$(python3 -c 'import json; print(json.load(open(".stack/resources.json"))["ImageBucket"])')"
  peek objects ImageBucket
  printf '\n== webtoon-create-complete\n'; peek drain WebtoonCreateCompleteQueue
  printf '\n== webtoon-update-complete\n'; peek drain WebtoonUpdateCompleteQueue
  printf '\n$ devtools produce-samples   (the Kafka sample events'"'"' records, stamped now)\n'
  seed_campaigns
  seed_coupons
  devtools produce-samples
  printf '\n$ local-triggers sources --idle 4   (consume, invoke through cargo lambda watch, commit)\n'
  sources
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT campaign_id, window_size, window_start, impressions, clicks, conversions, cost_micros FROM performance_metrics ORDER BY 1, 2, 3" \
    -c "SELECT campaign_id, score, computed_at FROM quality_scores ORDER BY 1" \
    -c "SELECT campaign_id, spend_date, redis_spent, db_spent, round(accuracy::numeric, 3) AS accuracy, correction_delta, correction FROM budget_sync_accuracy ORDER BY id DESC LIMIT 3" \
    -c "SELECT campaign_id, status, daily_budget FROM campaigns WHERE campaign_id IN (12345, 12346, 12347) ORDER BY 1" \
    -c "SELECT request_id, coupon_id, user_id, outcome, reason FROM coupon_issue_outcomes ORDER BY request_id" \
    -c "SELECT id, name, total_stock, remaining_stock FROM coupons WHERE id IN (3001, 3002) ORDER BY 1"
  printf '$ devtools coupon-outcome 5f0c1c2e-0001-4a6b-9d1e-000000000003\n'
  devtools coupon-outcome 5f0c1c2e-0001-4a6b-9d1e-000000000003
  printf '== Redis\n'
  for c in 12346; do echo "  $(counter_key $c) = $(redis-cli -u "$REDIS_URL" GET "$(counter_key $c)")"; done
  echo "  budget:status:{12347} = $(redis-cli -u "$REDIS_URL" GET 'budget:status:{12347}')"
  printf '\n== scheduled jobs for 2026-11-20, fired by the scheduler source as at 02:00, 03:00 and 04:00 KST on the 21st\n'
  seed_sample_day
  for run in "daily-rollup 02" "budget-settlement 03" "retention 04"; do
    set -- $run
    printf '\n$ local-triggers schedule fire %s --at 2026-11-21T%s:00:00+09:00\n' "$1" "$2"
    triggers schedule fire "$1" --at "2026-11-21T$2:00:00+09:00" --retry-delay 5
  done
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT campaign_id, stat_date, impressions, clicks, cost_micros, hours FROM campaign_daily_stats WHERE stat_date = '2026-11-20' ORDER BY 1" \
    -c "SELECT stat_date, campaign_id, metric, rolled_up, raw, round(difference_ratio::numeric, 3) AS difference, status FROM rollup_reviews ORDER BY 1, 2" \
    -c "SELECT advertiser_id, settle_date, campaigns, db_spent, redis_spent, matched, redis_over FROM budget_settlements ORDER BY 2, 1"
  printf '== S3 (bucket %s)\n' "$(python3 -c 'import json; print(json.load(open(".stack/resources.json"))["ReportBucket"])')"
  peek objects ReportBucket
  printf '\n== CDP backfill: one NEW and two EXISTING advertisers; orchestrator ticks fired by the scheduler source, months through the jobs queue to cdp-worker\n'
  seed_cdp
  for tick in 1 2; do
    at=$(now_utc)
    printf '\n$ local-triggers schedule fire cdp-orchestrator --event Tick --at %s   (tick %s)\n' "$at" "$tick"
    triggers schedule fire cdp-orchestrator --event Tick --at "$at"
    printf '$ local-triggers sources --idle 4   (cdp-jobs -> cdp-worker; a finished month queues the next)\n'
    sources | grep -E 'cdp-worker|^$' || true
  done
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT advertiser_id, name, advertiser_type, active, backfill_completed, to_char(last_completed_month, 'YYYY-MM') AS last_completed FROM advertisers WHERE advertiser_id IN (501, 502, 503) ORDER BY 1" \
    -c "SELECT advertiser_id, count(*) AS months, count(*) FILTER (WHERE state = 'COMPLETED') AS completed, to_char(min(month), 'YYYY-MM') AS oldest, to_char(max(month), 'YYYY-MM') AS newest, sum(processed_records) AS records FROM cdp_months WHERE advertiser_id IN (501, 502, 503) GROUP BY 1 ORDER BY 1" \
    -c "SELECT advertiser_id, to_char(month, 'YYYY-MM') AS month, state, processed_records, failed_records, retry_count, to_char(started_at, 'HH24:MI:SS.MS') AS started FROM cdp_months WHERE advertiser_id = 501 ORDER BY month LIMIT 4" \
    -c "SELECT advertiser_id, to_char(month, 'YYYY-MM') AS month, dataset, status, records, bytes, left(sha256, 16) AS sha256 FROM cdp_exports WHERE advertiser_id IN (501, 502) ORDER BY month DESC, advertiser_id, dataset LIMIT 6"
  cdp_bucket=$(python3 -c 'import json; print(json.load(open(".stack/resources.json"))["CdpBucket"])')
  printf '== S3 (bucket %s): %s CDP files; advertiser 502\n' "$cdp_bucket" "$(peek objects CdpBucket | grep -c 'advertiser_id=50[123]/')"
  peek objects CdpBucket | grep 'advertiser_id=502/'
  month=$(sql "SELECT to_char(max(month), 'YYYY-MM') FROM cdp_months WHERE advertiser_id = 502")
  printf '\n$ devtools cdp-rows %s cdp/advertiser_id=502/month=%s/performance.parquet --limit 3\n' "$cdp_bucket" "$month"
  devtools cdp-rows "$cdp_bucket" "cdp/advertiser_id=502/month=$month/performance.parquet" --limit 3
  printf '$ devtools cdp-rows %s cdp/advertiser_id=502/month=%s/audience.parquet --limit 3\n' "$cdp_bucket" "$month"
  devtools cdp-rows "$cdp_bucket" "cdp/advertiser_id=502/month=$month/audience.parquet" --limit 3
  printf '\n== admin API: GET/POST /v1/admin/... through the local HTTP API (the template'"'"'s routes and JWT authorizer; docs/openapi.json)\n'
  start_http_api
  printf '$ curl http://127.0.0.1:%s/v1/admin/health   (no token: the only open route)\n' "$HTTP_PORT"
  admin GET /health none | answer
  printf '$ curl .../v1/admin/backfill/status -H "Authorization: Bearer $(devtools token ops-read --scope ops:read)"\n'
  admin GET /backfill/status | answer
  printf '$ curl .../v1/admin/backfill/advertisers/501/progress   (ops:read)\n'
  admin GET /backfill/advertisers/501/progress | answer
  printf '$ curl -X POST .../v1/admin/backfill/advertisers/502/trigger   (ops:read: refused)\n'
  admin POST /backfill/advertisers/502/trigger ops:read '' "demo-trigger-$(date +%s)" | answer
  key="demo-trigger-$(date +%s)"
  printf '$ curl -X POST .../v1/admin/backfill/advertisers/502/trigger -H "Idempotency-Key: %s"   (ops:admin)\n' "$key"
  admin POST /backfill/advertisers/502/trigger ops:admin '' "$key" | answer
  printf '$ the same again (a client retry): the first answer, Idempotent-Replayed: %s\n' \
    "$(admin POST /backfill/advertisers/502/trigger ops:admin '' "$key" >/dev/null; grep -i '^idempotent-replayed' "$LOGS/admin.headers" | cut -d' ' -f2 | tr -d '\r')"
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT id, subject, action, target, status, idempotency_key FROM admin_audit ORDER BY id DESC LIMIT 3"
  printf '\n== alerts: POST /v1/alerts through the local HTTP API (its JWT authorizer from the template) -> alert-fanout -> user-alert-delivery -> push and web\n'
  seed_alert_users
  start_websocket
  printf '$ curl -X POST http://127.0.0.1:%s/v1/alerts   (no token)\n' "$HTTP_PORT"
  post_alert "$(sample_alert)"
  printf '$ curl ... -H "Authorization: Bearer $(devtools token ops-console --audience someone-else)"\n'
  post_alert "$(sample_alert)" ops-console someone-else
  printf '$ curl ... -H "Authorization: Bearer $(devtools token ops-console)" --data "<events/alert-intake.json body>"\n'
  post_alert "$(sample_alert)" ops-console
  printf '\n$ local-triggers sources --idle 4\n'
  sources
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT id, alert_kind, app_name, title, severity, created_by FROM alerts ORDER BY id DESC LIMIT 3" \
    -c "SELECT alert_id, published, completed_at IS NOT NULL AS fanned_out FROM alert_fanouts ORDER BY alert_id DESC LIMIT 3" \
    -c "SELECT alert_id, user_id, status FROM user_alert_statuses ORDER BY alert_id DESC, user_id LIMIT 6" \
    -c "SELECT alert_id, user_id, channel, left(target, 40) AS target, state, last_error FROM user_alert_deliveries ORDER BY alert_id DESC, user_id LIMIT 6"
  printf '== what ops-ana'"'"'s browser received (local-triggers listen)\n'; cat "$LOGS/ws-client.out"
  printf '\n== what the local SNS delivered to ops-bo'"'"'s phone\n'; peek push-messages "$BO_PHONE"
  printf '\n== TOONPICK: the daily collection reads the local catalog feeds (infra/local/catalog on :%s) and queues requests for webtoon-sync\n' "$CATALOG_PORT"
  start_catalog
  printf '$ local-triggers schedule fire daily-collection --at 2026-11-21T02:00:00+09:00\n'
  triggers schedule fire daily-collection --at 2026-11-21T02:00:00+09:00 --retry-delay 5
  printf '$ local-triggers sources --idle 4   (webtoon-create-request -> webtoon-sync)\n'
  sources | grep -E 'webtoon|^$' || true
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT c.platform, c.external_id, left(c.content_hash, 12) AS hash, c.changed_on, w.title, w.status FROM catalog_entries c LEFT JOIN webtoons w USING (platform, external_id) ORDER BY 1, 2"
  printf '$ cargo lambda invoke daily-collection --data-file events/daily-collection-date.json   (again: nothing new, nothing sent)\n'
  job daily-collection daily-collection-date.json | python3 -c 'import json,sys; s=json.load(sys.stdin); print({k: s[k] for k in ("fetched", "new_titles", "changed_titles", "unchanged_titles", "failed_titles")})'
  printf '\n== TOONPICK: recommendations for 60 seeded readers (readers 1-20 read romance, the rest action), fired as at 02:30 KST\n'
  seed_readers
  triggers schedule fire recommendations --at 2026-11-21T02:30:00+09:00 --retry-delay 5
  printf '== reader 7 (romance): the top 10 and why\n'
  reader_list 7
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT set_id, target_date, state, readers, jsonb_pretty(evaluation) AS evaluation FROM recommendation_sets ORDER BY set_id DESC LIMIT 1"
  printf '\n== TOONPICK: the weekly analysis (Monday 03:00 KST) and the monthly report\n'
  triggers schedule fire weekly-analysis --at 2026-11-23T03:00:00+09:00 --retry-delay 5
  psql -d "${DB_NAME:-adworkers}" -X -P pager=off \
    -c "SELECT week_start, weekly_active, reads, reads_per_reader, genres -> 0 ->> 'genre' AS top_genre, jsonb_array_length(rising) AS rising, jsonb_array_length(falling) AS falling FROM weekly_analyses ORDER BY week_start DESC LIMIT 1"
  printf '$ cargo lambda invoke monthly-report --data-file events/monthly-report-date.json\n'
  job monthly-report monthly-report-date.json | python3 -c 'import json,sys; d=json.load(sys.stdin)["details"]; print("report:", d["report"]); print("objects:", *d["objects"], sep="\n  "); print("link (7 days):", d["link"][:110] + "...")'
  printf '\n(running again is safe: a repeated request changes nothing and sends nothing)\n'
  exit 0
fi

# ---- test mode: every result asserted
[ "$(invoke webtoon-sync-create.json | failures)" = "" ] || fail "create reported failures"
[ "$(peek drain WebtoonCreateCompleteQueue | outcomes)" = "created" ] || fail "no 'created' completion"
[ "$(sql "SELECT count(*) FROM episodes")" = 2 ] || fail "episodes not stored"
[ "$(sql "SELECT count(*) FROM webtoons WHERE thumbnail_key IS NOT NULL AND cover_key IS NOT NULL")" = 1 ] \
  || fail "images not stored"

[ "$(invoke webtoon-sync-update.json | failures)" = "" ] || fail "update reported failures"
[ "$(peek drain WebtoonUpdateCompleteQueue | outcomes)" = "updated" ] || fail "no 'updated' completion"
[ "$(sql "SELECT status || ' ' || rating FROM webtoons WHERE external_id = '783053'")" = "HIATUS 9.64" ] \
  || fail "update not applied"

before=$(sql "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM webtoons t")
[ "$(invoke webtoon-sync-create.json | failures)" = "" ] || fail "duplicate create reported failures"
[ "$(peek drain WebtoonCreateCompleteQueue | outcomes)" = "" ] || fail "duplicate create sent a completion"
[ "$(sql "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM webtoons t")" = "$before" ] \
  || fail "duplicate create changed rows"

expected="0c0e7f4e-1b2a-4d3c-9e8f-000000000004 0c0e7f4e-1b2a-4d3c-9e8f-000000000005"
[ "$(invoke webtoon-sync-mixed-batch.json | failures)" = "$expected" ] || fail "poison messages not reported"
[ "$(peek drain WebtoonCreateCompleteQueue | outcomes)" = "created" ] || fail "good message beside poison not created"
grep -q "message rejected" "$LOGS/watch.log" || fail "poison messages were not logged with a reason"

# ---- Kafka: produced -> consumed -> invoked -> committed, through the local event sources
sources >/dev/null  # whatever earlier runs left on the queues and topics
sql "TRUNCATE performance_metrics, quality_scores, quality_score_history, budget_sync_accuracy, campaign_pauses, kafka_dead_letters, coupon_issue_outcomes, user_coupons" >/dev/null
seed_campaigns
seed_coupons
devtools produce-samples >/dev/null
consumed=$(sources)
for expected in "performance-metrics Kafka: 6 records" "quality-score Kafka: 6 records" "budget-sync Kafka: 4 records" "coupon-issue Kafka: 8 records"; do
  grep -q "$expected" <<<"$consumed" || fail "kafka sources: expected '$expected' in: $consumed"
done
[ "$(sql "SELECT count(*) FROM performance_metrics")" = 3 ] || fail "performance windows not stored"
[ "$(sql "SELECT string_agg(campaign_id || '=' || score, ' ' ORDER BY campaign_id) FROM quality_scores")" = "2001=6.1 2002=5" ] \
  || fail "quality scores not stored"
[ "$(sql "SELECT count(*) FROM budget_sync_accuracy")" = 3 ] || fail "budget accuracy rows not recorded"
[ "$(sql "SELECT status FROM campaigns WHERE campaign_id = 12347")" = paused ] || fail "campaign 12347 not paused"
[ "$(redis-cli -u "$REDIS_URL" GET "$(counter_key 12346)")" = 40000 ] || fail "Redis counter of 12346 not corrected"
[ "$(redis-cli -u "$REDIS_URL" GET 'budget:status:{12347}')" = paused ] || fail "Redis status of 12347 not set"
[ "$(coupon_outcomes)" = "issued issued duplicate sold_out expired invalid" ] || fail "coupon outcomes: $(coupon_outcomes)"
[ "$(sql "SELECT remaining_stock FROM coupons WHERE id = 3001")" = 0 ] || fail "coupon 3001 stock not taken"
[ "$(sql "SELECT count(*) FROM kafka_dead_letters")" = 6 ] || fail "poison records not dead-lettered"
[ "$(sql "SELECT count(*) FROM kafka_dead_letters WHERE consumer = 'coupon-issue-group'")" = 1 ] \
  || fail "the malformed coupon request was not dead-lettered"
# Committed: the groups have nothing left to read.
again=$(sources)
[ "$(grep -c "Kafka: 0 records" <<<"$again")" = 6 ] || fail "offsets not committed: $again"
# The same requests again, from the file: every id is decided, nothing changes.
out=$(job coupon-issue coupon-issue.json)
[ "$(field applied <<<"$out") $(field rejected <<<"$out")" = "0 1" ] || fail "coupon-issue replay: $out"
[ "$(coupon_outcomes)" = "issued issued duplicate sold_out expired invalid" ] || fail "coupon replay changed outcomes"
[ "$(sql "SELECT count(*) FROM user_coupons")" = 2 ] || fail "coupon replay granted again"

# ---- alerts: the HTTP event through alert-intake, the topics through the local sources, push
# to the local SNS and web through the WebSocket stand-in to a connected client
seed_alert_users
start_websocket
out=$(job alert-intake alert-intake.json)
[ "$(field statusCode <<<"$out")" = 202 ] || fail "alert-intake: $out"
# Twice: a source idle for 4 s stops, and the first fan-out may still be compiling under
# cargo lambda watch when user-alert-topic's source goes quiet.
sources >/dev/null
sources >/dev/null
[ "$(alert_statuses)" = "ops-ana=delivered ops-bo=delivered" ] || fail "alert statuses: $(alert_statuses)"
grep -q "bank-api v2.4.1 deployed" "$LOGS/ws-client.out" || fail "ops-ana's browser got nothing: $(cat "$LOGS/ws-client.out")"
[ -n "$(peek push-messages "$BO_PHONE")" ] || fail "ops-bo's phone got nothing"
[ "$(sql "SELECT count(*) FROM ws_connections WHERE connection_id = 'stale-connection'")" = 0 ] || fail "the gone connection was kept"
# The same request again (its dedupe key): the first alert, nothing new.
out=$(job alert-intake alert-intake.json)
grep -q '\\"duplicate\\":true' <<<"$out" || fail "alert-intake retry: $out"
# The sample MSK events replayed: alert 1 fanned out already; ops-ana and ops-bo have their
# status; ops-cy gets one (stored: no channel); the poison record of each file is dead-lettered.
out=$(job alert-fanout alert-fanout.json)
[ "$(field applied <<<"$out") $(field rejected <<<"$out")" = "1 1" ] || fail "alert-fanout replay: $out"
out=$(job user-alert-delivery user-alert-delivery.json)
[ "$(field applied <<<"$out") $(field rejected <<<"$out")" = "1 1" ] || fail "user-alert-delivery replay: $out"
[ "$(alert_statuses)" = "ops-ana=delivered ops-bo=delivered ops-cy=stored" ] || fail "statuses after replay: $(alert_statuses)"
[ "$(grep -c "bank-api v2.4.1 deployed" "$LOGS/ws-client.out")" = 1 ] || fail "the replay delivered again"
# Over HTTP through the local API and its JWT authorizer: refused without a valid token for the
# audience; a shop-api alert reaches ops-cy, who has no channel (stored).
start_http_api
shop='{"alert_kind":"ERROR","app_name":"shop-api","title":"5xx above 2 %","body":"checkout","severity":"critical"}'
[ "$(post_alert "$shop" | cut -d' ' -f1)" = 401 ] || fail "HTTP API: a request without a token was let through"
[ "$(post_alert "$shop" ops-console someone-else | cut -d' ' -f1)" = 401 ] || fail "HTTP API: a token for another audience was let through"
[ "$(post_alert '{"alert_kind":1}' ops-console | cut -d' ' -f1)" = 422 ] || fail "HTTP API: a bad body was not 422"
[ "$(post_alert "$shop" ops-console | cut -d' ' -f1)" = 202 ] || fail "HTTP API: $(cat "$LOGS/post.out")"
sources >/dev/null
shop_id=$(sql "SELECT id FROM alerts WHERE app_name = 'shop-api'")
[ "$(alert_statuses "$shop_id")" = "ops-cy=stored" ] || fail "shop-api alert statuses: $(alert_statuses "$shop_id")"
# WebSocket $connect / $disconnect events from the files.
job alert-connections alert-connections-connect.json >/dev/null
[ "$(sql "SELECT user_id FROM ws_connections WHERE connection_id = 'Qx3Uxd1BIE0CIYw='")" = ops-ana ] || fail "\$connect not kept"
job alert-connections alert-connections-disconnect.json >/dev/null
[ "$(sql "SELECT count(*) FROM ws_connections WHERE connection_id = 'Qx3Uxd1BIE0CIYw='")" = 0 ] || fail "\$disconnect not applied"

# ---- scheduled jobs: the events/ files through cargo lambda invoke, as the scheduler would
# (without the Kafka samples' windows, which have no raw events behind them)
sql "TRUNCATE performance_metrics" >/dev/null
seed_sample_day
out=$(job daily-rollup daily-rollup-date.json)
[ "$(field daily_rows <<<"$out")" = 2 ] || fail "daily-rollup: $out"
[ "$(sql "SELECT string_agg(campaign_id || ' ' || metric, ',') FROM rollup_reviews WHERE stat_date = '2026-11-20'")" = "12346 impressions" ] \
  || fail "daily-rollup did not open the review of 12346"
rolled=$(sql "SELECT md5(string_agg(t::text, '|' ORDER BY t.campaign_id)) FROM (SELECT campaign_id, impressions, clicks, hours FROM campaign_daily_stats) t")
# The scheduled form, fired by the scheduler source as at 02:00 KST on the 21st: the same day.
out=$(triggers schedule fire daily-rollup --at 2026-11-21T02:00:00+09:00 | sed -n 's/^daily-rollup: ran at attempt 1: //p')
[ "$(field target_date <<<"$out") $(field new_reviews <<<"$out")" = "2026-11-20 0" ] || fail "scheduled daily-rollup: $out"
[ "$(sql "SELECT md5(string_agg(t::text, '|' ORDER BY t.campaign_id)) FROM (SELECT campaign_id, impressions, clicks, hours FROM campaign_daily_stats) t")" = "$rolled" ] \
  || fail "re-running daily-rollup changed its rows"

out=$(job budget-settlement budget-settlement-date.json)
[ "$(field match <<<"$out") $(field redis_over <<<"$out")" = "1 1" ] || fail "budget-settlement: $out"
peek objects ReportBucket | grep -q "settlements/2026/11/20.csv" || fail "no settlement report in S3"
job budget-settlement budget-settlement.json >/dev/null
[ "$(sql "SELECT campaigns || ' ' || db_spent || ' ' || redis_spent FROM budget_settlements WHERE advertiser_id = 77")" = "2 48 54" ] \
  || fail "settlement row of advertiser 77"

before=$(sql "SELECT count(*) FROM ad_events")
out=$(job retention retention-dry-run.json)
[ "$(field dry_run <<<"$out")" = True ] || fail "retention dry run: $out"
job retention retention.json >/dev/null
[ "$(sql "SELECT count(*) FROM ad_events")" = "$before" ] || fail "retention touched events inside their window"
# ---- CDP backfill: a tick fired by the scheduler source, the months through the jobs queue's
# source to cdp-worker (a finished month queues the next), then the events/ files
seed_cdp
out=$(triggers schedule fire cdp-orchestrator --event Tick --at "$(now_utc)" | sed -n 's/^cdp-orchestrator: ran at attempt 1: //p')
[ "$(field started <<<"$out") $(field queued <<<"$out")" = "1 3" ] || fail "cdp tick: $out"
sources >/dev/null
[ "$(sql "SELECT count(*) FROM cdp_months WHERE advertiser_id = 501 AND state = 'COMPLETED'")" = 25 ] \
  || fail "CDP backfill of 501: $(sql "SELECT string_agg(state, ' ' ORDER BY month) FROM cdp_months WHERE advertiser_id = 501")"
[ "$(sql "SELECT advertiser_type FROM advertisers WHERE advertiser_id = 501")" = EXISTING ] || fail "501 did not become EXISTING"
[ "$(sql "SELECT string_agg(state, ' ' ORDER BY advertiser_id) FROM cdp_months WHERE advertiser_id IN (502, 503)")" = "COMPLETED COMPLETED" ] \
  || fail "the EXISTING advertisers' months"
[ "$(peek objects CdpBucket | grep -c 'advertiser_id=50[123]/month=.*/performance.parquet')" -ge 27 ] || fail "CDP files missing"
[ "$(sql "SELECT records FROM cdp_exports WHERE advertiser_id = 502 AND dataset = 'audience' ORDER BY month DESC LIMIT 1")" = 4 ] \
  || fail "502's audience facts"
out=$(job cdp-orchestrator cdp-orchestrator-tick.json)
[ "$(field queued <<<"$out") $(field idle <<<"$out")" = "0 3" ] || fail "a tick with nothing changed queued: $out"
out=$(job cdp-orchestrator cdp-orchestrator-clean-up.json)
[ "$(field stale <<<"$out")" = 0 ] || fail "cdp clean-up: $out"
[ "$(job cdp-worker cdp-worker.json | failures)" = "5d1b7c3e-0c7a-4d2e-8f6b-000000000002" ] || fail "cdp-worker: the malformed job not reported"
# ---- TOONPICK: collection from the local feeds through webtoon-sync, then recommendations,
# the weekly analysis and the monthly report on a seeded population
start_catalog
out=$(triggers schedule fire daily-collection --at 2026-11-21T02:00:00+09:00 | sed -n 's/^daily-collection: ran at attempt 1: //p')
[ "$(field new_titles <<<"$out") $(field failed_titles <<<"$out")" = "4 1" ] || fail "daily-collection: $out"
sources >/dev/null
[ "$(sql "SELECT count(*) FROM webtoons WHERE external_id LIKE 'toonpick-demo-%'")" = 4 ] || fail "the collected titles did not reach webtoon-sync"
out=$(job daily-collection daily-collection-date.json)
[ "$(field new_titles <<<"$out") $(field unchanged_titles <<<"$out")" = "0 4" ] || fail "daily-collection re-run: $out"
seed_readers
out=$(job recommendations recommendations-date.json)
[ "$(field readers <<<"$out")" = 60 ] || fail "recommendations: $out"
[ "$(sql "SELECT count(*) FROM current_recommendations r JOIN user_webtoon_events e USING (user_id, webtoon_id)")" = 0 ] \
  || fail "a reader was recommended a title they opened"
[ "$(sql "SELECT count(DISTINCT variant) FROM current_recommendations")" = 2 ] || fail "recommendations: one arm only"
out=$(triggers schedule fire weekly-analysis --at 2026-11-23T03:00:00+09:00 | sed -n 's/^weekly-analysis: ran at attempt 1: //p')
[ "$(sql "SELECT week_start FROM weekly_analyses")" = 2026-11-16 ] || fail "weekly-analysis: $out"
out=$(job monthly-report monthly-report-date.json)
peek objects ReportBucket | grep -q "reports/monthly/2026-11/report.html" || fail "no monthly report in S3: $out"
# ---- admin API: through the local HTTP API (the template's routes and authorizer), then fuzzed
# from its own OpenAPI document by schemathesis: no 5xx, every answer as documented
[ "$(admin GET /health none | cut -d' ' -f1)" = 200 ] || fail "admin health: $(cat "$LOGS/admin.out")"
[ "$(admin GET /backfill/status none | cut -d' ' -f1)" = 401 ] || fail "admin API: a request without a token was let through"
[ "$(admin GET /backfill/status alerts:write | cut -d' ' -f1)" = 403 ] || fail "admin API: a token without ops scopes was let through"
# TOONPICK's stored results (the section above wrote them).
out=$(admin GET /recommendations/7)
[ "$(cut -d' ' -f2- <<<"$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')" = 20 ] || fail "admin recommendations: $out"
[ "$(admin GET '/insights/weekly?week=2026-11-20' | cut -d' ' -f2- | field week_start)" = 2026-11-16 ] || fail "admin weekly insights"
[ "$(admin GET /recommendations/999999 | cut -d' ' -f1)" = 404 ] || fail "admin recommendations of nobody"
out=$(admin GET /backfill/advertisers/501/progress)
[ "$(cut -d' ' -f2- <<<"$out" | field months_done)" = 24 ] || fail "admin progress: $out"
[ "$(admin POST /backfill/advertisers/502/trigger ops:read '' e2e-t1 | cut -d' ' -f1)" = 403 ] || fail "admin API: a reader triggered"
[ "$(admin POST /backfill/advertisers/502/trigger ops:admin '' e2e-t1 | cut -d' ' -f1)" = 202 ] || fail "admin trigger: $(cat "$LOGS/admin.out")"
[ "$(admin POST /backfill/advertisers/502/trigger ops:admin '' e2e-t1 | cut -d' ' -f1)" = 202 ] && grep -qi '^idempotent-replayed: true' "$LOGS/admin.headers" \
  || fail "admin trigger: the repeat was not the first answer replayed"
[ "$(sql "SELECT count(*) FROM admin_audit WHERE action = 'backfill.trigger' AND status = 202")" = 1 ] || fail "admin trigger: audit rows"
out=$(admin POST /jobs/daily-rollup/executions ops:admin '{"date": "2026-11-20"}' e2e-x1)
[ "$(cut -d' ' -f1 <<<"$out")" = 202 ] || fail "admin execute: $out"
execution=$(cut -d' ' -f2- <<<"$out" | field execution_id)
for _ in $(seq 1 60); do
  state=$(admin GET "/jobs/executions/$execution" | cut -d' ' -f2- | field state)
  [ "$state" != requested ] && break; sleep 0.5
done
[ "$state" = succeeded ] || fail "admin execute: the daily rollup's run is $state"
# The events/ files: the API Gateway events of the greedy admin route and the open health route.
[ "$(job admin-api admin-api-health.json | field statusCode)" = 200 ] || fail "admin-api: events/admin-api-health.json"
[ "$(job admin-api admin-api.json | field statusCode)" = 200 ] || fail "admin-api: events/admin-api.json"
[ "$(job admin-api admin-api-trigger.json | field statusCode)" = 202 ] || fail "admin-api: events/admin-api-trigger.json"
# Positive and negative data, every check (invalid requests must be refused, valid ones
# accepted, headers and methods as documented), a fixed seed and no example database carried
# between runs, so a run repeats on any machine; any finding fails. About 2,100 cases in 20 s.
fuzz_token=$(devtools token ops-fuzz --scope ops:admin)
st --config-file infra/local/schemathesis.toml --no-color run docs/openapi.json \
  --url "http://127.0.0.1:$HTTP_PORT/v1" -H "Authorization: Bearer $fuzz_token" --mode all --checks all --seed 31 --max-examples 40 --generation-database none \
  >"$LOGS/schemathesis.log" 2>&1 \
  || { tail -80 "$LOGS/schemathesis.log" >&2; fail "schemathesis found answers the OpenAPI document does not allow (log: $LOGS/schemathesis.log)"; }
grep -E '^(Test cases|Summary)|passed|failed' "$LOGS/schemathesis.log" | tail -3 || true
# Local invocations carry the template's timeout, not cargo lambda watch's 1970 deadline.
grep -qE 'time_left_ms=[1-9][0-9]{3,}' "$LOGS/watch.log" || fail "local invocations ran without time left"
! grep -qE 'time_left_ms=0\b' "$LOGS/watch.log" || fail "a local invocation had no time left"

echo "e2e: 14 passed, 0 failed"
