-- wrk script: `give` of 1 gold between random players over kokoro's HTTP API,
-- each request with its own command id (as a bot sends them), so kokoro
-- records every command as the pgbench baseline (give.sql) does.
-- Players 1..PLAYERS in guild 1, seeded by benches/http/run.sh.
local players = tonumber(os.getenv("PLAYERS") or "10000")
local token = os.getenv("KOKORO_API_TOKEN") or "kokoro-http-bench-token"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
  thread:set("errors", 0)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  run = os.time()
  n = 0
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local from = math.random(1, players)
  local to = math.random(1, players - 1)
  if to >= from then to = to + 1 end
  local body = string.format(
    '{"id":"wrk-%d-%d-%d","guild_id":"1","user_id":"%d","command":"give","args":{"to":"%d","amount":1}}',
    run, tid, n, from, to)
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
end
