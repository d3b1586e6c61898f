#!/usr/bin/env bash
# A `give` over kokoro's HTTP API on PostgreSQL (wrk, CONNS connections)
# against pgbench running the same two-account transaction (give.sql) with
# as many clients, in one run, on fresh databases seeded alike.
#
#   benches/http/run.sh [KOKORO_BINARY]
#   CONNS=64 SECONDS=20 PLAYERS=10000 PG=postgres://postgres@127.0.0.1:5432 benches/http/run.sh
#
# Needs wrk and pgbench (Debian: wrk, postgresql-client). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/kokoro}
CONNS=${CONNS:-64}
SECONDS_=${SECONDS:-20}
PLAYERS=${PLAYERS:-10000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18080}
export PLAYERS KOKORO_API_TOKEN=kokoro-http-bench-token

seed() { # db
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  "$BIN" migrate --database-url "$PG/$1" >/dev/null
  psql -q "$PG/$1" <<SQL
INSERT INTO users (guild_id, user_id, gold, gems, xp, level, daily_day, daily_streak, created_ms, updated_ms)
  SELECT 1, n, 1000000000, 0, 0, 0, NULL, 0, 0, 0 FROM generate_series(1, $PLAYERS) n;
INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, at_ms)
  SELECT 1, n, 'gold', 1000000000, 1000000000, 'welcome', 0 FROM generate_series(1, $PLAYERS) n;
ANALYZE;
SQL
}

seed kokoro_http_bench
"$BIN" serve --http "127.0.0.1:$PORT" --database-url "$PG/kokoro_http_bench" \
  --log-format json >/tmp/kokoro-http-bench.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { tail -n 5 /tmp/kokoro-http-bench.log; exit 1; }
echo "== kokoro: give over HTTP, $CONNS connections, ${SECONDS_}s"
wrk -t2 -c"$CONNS" -d"${SECONDS_}s" --latency -s benches/http/give.lua "http://127.0.0.1:$PORT" | tee /tmp/kokoro-http-bench.wrk
kill -INT $SERVER; wait $SERVER || true
"$BIN" verify --database-url "$PG/kokoro_http_bench" | tail -n 3

seed kokoro_http_baseline
echo "== pgbench: the same transaction, $CONNS clients, ${SECONDS_}s"
pgbench -n -c"$CONNS" -j2 -T"$SECONDS_" -D players="$PLAYERS" -f benches/http/give.sql "$PG/kokoro_http_baseline" \
  | grep -E "tps|latency average|failed"
psql -q "$PG/postgres" -c "DROP DATABASE kokoro_http_bench" -c "DROP DATABASE kokoro_http_baseline"
