-- wrk script: `give` of 1 gold between random players over kokoro's HTTP API,
-- each request with its own command id (as a bot sends them), so kokoro
-- records every command as the pgbench baseline (give.sql) does.
-- PLAYERS: players 1..PLAYERS in each guild; GUILDS: comma-separated guild
-- ids, one drawn per request (default 1); SEED: tells concurrent wrk runs'
-- command ids apart. Seeded by benches/http/run.sh and benches/cluster/run.sh.
local players = tonumber(os.getenv("PLAYERS") or "10000")
local token = os.getenv("KOKORO_API_TOKEN") or "kokoro-http-bench-token"
local seed = os.getenv("SEED") or "0"
local guilds = {}
for g in string.gmatch(os.getenv("GUILDS") or "1", "[^,]+") do
  table.insert(guilds, g)
end
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
  thread:set("errors", 0)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid + tonumber(seed))
  run = os.time()
  n = 0
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local guild = guilds[math.random(1, #guilds)]
  local from = math.random(1, players)
  local to = math.random(1, players - 1)
  if to >= from then to = to + 1 end
  local body = string.format(
    '{"id":"wrk-%s-%d-%d-%d","guild_id":"%s","user_id":"%d","command":"give","args":{"to":"%d","amount":1}}',
    seed, run, tid, n, guild, from, to)
  return wrk.format("POST", "/v1/commands", nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local errors = 0
  for _, t in ipairs(threads) do
    errors = errors + t:get("errors")
  end
  io.write(string.format("answers other than 200: %d\n", errors))
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
