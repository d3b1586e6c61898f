#!/usr/bin/env bash
# kokoro as a cluster on this machine: `give` over HTTP (wrk) against 1, 2
# and 3 nodes over one PostgreSQL, NATS routing; then, with two nodes, the
# cost of a forwarded command against a local one; then, with three, the
# time from a kill -9 to the dead node's slots being owned again.
#
#   benches/cluster/run.sh [KOKORO_BINARY]
#   CONNS=48 SECONDS=15 GUILDS=64 PLAYERS=500 NATS=nats://127.0.0.1:4222 benches/cluster/run.sh
#   ROUNDS=3 PAIRS_ONLY=1 benches/cluster/run.sh   # only the one-node pairs, three times
#
# Needs wrk, psql and a NATS server (Debian: wrk, postgresql-client,
# nats-server). Loopback only; every database and cluster name is its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/kokoro}
CONNS=${CONNS:-48}
SECONDS_=${SECONDS:-15}
NGUILDS=${GUILDS:-64}
PLAYERS=${PLAYERS:-500}
SLOTS=${SLOTS:-64}
ROUNDS=${ROUNDS:-2}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
NATS=${NATS:-nats://127.0.0.1:4222}
DB=kokoro_cluster_bench
export PLAYERS KOKORO_API_TOKEN=kokoro-cluster-bench-token
# Guild k is in slot k (its id's bits above 22 are k).
GUILD_LIST=$(seq 0 $((NGUILDS - 1)) | awk '{printf "%s%d", (NR>1?",":""), $1 * 4194304 + 1}')
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done' EXIT

seed() {
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  "$BIN" migrate --database-url "$PG/$DB" >/dev/null
  psql -q "$PG/$DB" <<SQL
INSERT INTO users (guild_id, user_id, gold, gems, xp, level, daily_day, daily_streak, created_ms, updated_ms)
  SELECT g * 4194304 + 1, n, 1000000000, 0, 0, 0, NULL, 0, 0, 0
  FROM generate_series(0, $NGUILDS - 1) g, generate_series(1, $PLAYERS) n;
INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, at_ms)
  SELECT g * 4194304 + 1, n, 'gold', 1000000000, 1000000000, 'welcome', 0
  FROM generate_series(0, $NGUILDS - 1) g, generate_series(1, $PLAYERS) n;
ANALYZE;
SQL
}

# start_nodes CLUSTER N: N nodes on ports 18090.., waits until every slot is owned
start_nodes() {
  local cluster=$1 n=$2
  for i in $(seq 1 "$n"); do
    "$BIN" serve --http "127.0.0.1:$((18089 + i))" --database-url "$PG/$DB" \
      --data-dir "/tmp/kokoro-cluster-bench-$i" --nats-url "$NATS" --cluster "$cluster" \
      --node-id "n$i" --slots "$SLOTS" --log-format json >"/tmp/kokoro-cluster-bench-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 300); do
    if "$BIN" cluster status --database-url "$PG/$DB" --cluster "$cluster" >/dev/null 2>&1 \
      && [ "$(psql -tA "$PG/$DB" -c "SELECT COUNT(DISTINCT owner) FROM cluster_leases WHERE cluster = '$cluster' AND expires_at > now()")" = "$n" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not settle" >&2; exit 1
}

stop_nodes() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# wrk_all N GUILDS: wrk against each of the N nodes at once, CONNS split
# between them; prints each node's line and the sum.
wrk_all() {
  local n=$1 guilds=$2 per=$((CONNS / $1)) loaders=()
  for i in $(seq 1 "$n"); do
    GUILDS=$guilds SEED=$i wrk -t1 -c"$per" -d"${SECONDS_}s" --latency -s benches/http/give.lua \
      "http://127.0.0.1:$((18089 + i))" >"/tmp/kokoro-cluster-bench-wrk-$i" &
    loaders+=($!)
  done
  wait "${loaders[@]}"
  local total=0
  for i in $(seq 1 "$n"); do
    local rps lat
    rps=$(awk '/Requests\/sec/ {print $2}' "/tmp/kokoro-cluster-bench-wrk-$i")
    lat=$(grep '^p50' "/tmp/kokoro-cluster-bench-wrk-$i")
    echo "  node $i: $rps/s, $lat, $(grep 'other than 200' "/tmp/kokoro-cluster-bench-wrk-$i")"
    total=$(awk -v a="$total" -v b="$rps" 'BEGIN {printf "%.0f", a + b}')
  done
  echo "  total: $total/s"
}

# owned_by CLUSTER NODE: the guilds of the slots NODE owns, comma-separated
owned_by() {
  psql -tA "$PG/$DB" -c "SELECT string_agg((slot::bigint * 4194304 + 1)::text, ',') FROM cluster_leases WHERE cluster = '$1' AND owner = '$2' AND slot < $NGUILDS"
}

# wrk_aligned CLUSTER N: each node is sent only its own guilds (as Discord's
# shards do when their ranges line up with the slots): nothing forwarded.
wrk_aligned() {
  local cluster=$1 n=$2 per=$((CONNS / $2)) loaders=() total=0
  for i in $(seq 1 "$n"); do
    GUILDS=$(owned_by "$cluster" "n$i") SEED=10$i wrk -t1 -c"$per" -d"${SECONDS_}s" --latency \
      -s benches/http/give.lua "http://127.0.0.1:$((18089 + i))" >"/tmp/kokoro-cluster-bench-wrk-$i" &
    loaders+=($!)
  done
  wait "${loaders[@]}"
  for i in $(seq 1 "$n"); do
    local rps
    rps=$(awk '/Requests\/sec/ {print $2}' "/tmp/kokoro-cluster-bench-wrk-$i")
    echo "  node $i: $rps/s, $(grep '^p50' "/tmp/kokoro-cluster-bench-wrk-$i")"
    total=$(awk -v a="$total" -v b="$rps" 'BEGIN {printf "%.0f", a + b}')
  done
  echo "  total: $total/s"
}

seed
single() {
  "$BIN" serve --http "127.0.0.1:18090" --database-url "$PG/$DB" --data-dir /tmp/kokoro-cluster-bench-0 \
    --log-format json >/tmp/kokoro-cluster-bench-0.log 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:18090/readyz" >/dev/null && break; sleep 0.1; done
}
# A freshly seeded database is slow at first (its pages' first writes):
# whichever run came first was up to 3x slower, so warm it, then measure
# one node outside and inside cluster mode twice each, alternated.
echo "== warm-up (not counted): one node, not in cluster mode, $((3 * SECONDS_))s"
single
SECONDS_WARM=$((3 * SECONDS_))
GUILDS=$GUILD_LIST SEED=7 wrk -t1 -c"$CONNS" -d"${SECONDS_WARM}s" -s benches/http/give.lua \
  "http://127.0.0.1:18090" >/dev/null
stop_nodes
for round in $(seq 1 "$ROUNDS"); do
  echo "== baseline ($round): one node, not in cluster mode, $CONNS connections, ${SECONDS_}s"
  single
  wrk_all 1 "$GUILD_LIST"
  stop_nodes
  echo "== one node in cluster mode ($round), $CONNS connections, ${SECONDS_}s"
  start_nodes "bench1r$round-$$" 1
  wrk_all 1 "$GUILD_LIST"
  stop_nodes
done
if [ -n "${PAIRS_ONLY:-}" ]; then exit 0; fi
for n in 2 3; do
  echo "== $n node(s): every node sent every guild ($(( (n - 1) * 100 / n ))% forwarded), $CONNS connections, ${SECONDS_}s"
  start_nodes "bench$n-$$" "$n"
  wrk_all "$n" "$GUILD_LIST"
  if [ "$n" -gt 1 ]; then
    echo "== $n nodes: each node sent its own guilds only (none forwarded)"
    wrk_aligned "bench$n-$$" "$n"
  fi
  stop_nodes
done

echo "== forwarded against local: two nodes, all load at node 1 ($CONNS connections, then 1)"
start_nodes "benchfw-$$" 2
LOCAL=$(owned_by "benchfw-$$" n1)
REMOTE=$(owned_by "benchfw-$$" n2)
for conns in "$CONNS" 1; do
  for what in local remote; do
    guilds=$LOCAL; [ "$what" = remote ] && guilds=$REMOTE
    GUILDS=$guilds SEED=9$conns wrk -t1 -c"$conns" -d"${SECONDS_}s" --latency -s benches/http/give.lua \
      "http://127.0.0.1:18090" >/tmp/kokoro-cluster-bench-wrk-fw
    echo "  $what guilds, $conns connection(s): $(awk '/Requests\/sec/ {print $2}' /tmp/kokoro-cluster-bench-wrk-fw)/s, $(grep '^p50' /tmp/kokoro-cluster-bench-wrk-fw)"
  done
done
stop_nodes

echo "== kill -9 of one of three nodes (lease TTL 10s): time until its slots are owned again"
start_nodes "benchkill-$$" 3
victim=${PIDS[1]}
kill -9 "$victim"
killed=$(date +%s.%N)
while :; do
  left=$(psql -tA "$PG/$DB" -c "SELECT COUNT(*) FROM cluster_leases WHERE cluster = 'benchkill-$$' AND (owner = 'n2' OR owner IS NULL OR expires_at < now())")
  [ "$left" = 0 ] && break
  sleep 0.05
done
echo "  owned again after $(awk -v a="$killed" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}') s"
stop_nodes
"$BIN" verify --database-url "$PG/$DB" | tail -n 2
psql -q "$PG/postgres" -c "DROP DATABASE $DB"
