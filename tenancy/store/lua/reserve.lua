-- Reserve quota seconds for one prompt, atomically and idempotently on its prompt id.
-- KEYS: 1 reservation hash, 2 used seconds by day, 3 held seconds by day, 4 held prompts (zset by deadline),
--       5 ledger stream (all share the tenant's {hash tag})
-- ARGV: 1 tenant (unused: the keys carry it), 2 prompt id, 3 seconds, 4 limit (negative: unlimited), 5 max active, 6 day, 7 deadline,
--       8 instance, 9 now ('' for the server's TIME)
-- Returns {allowed 0|1, reason, used, held, active, replay 0|1}; seconds as %.17g strings so no bits are lost.
local function exact(x) return string.format('%.17g', x) end

local day = ARGV[6]
local used = tonumber(redis.call('HGET', KEYS[2], day) or '0')
local held = tonumber(redis.call('HGET', KEYS[3], day) or '0')
local active = redis.call('ZCARD', KEYS[4])
local previous = redis.call('HGET', KEYS[1], 'reason')
if previous then
  return {previous == 'ok' and 1 or 0, previous, exact(used), exact(held), active, 1}
end

local seconds, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local reason = 'ok'
if active >= tonumber(ARGV[5]) then
  reason = 'concurrency_limit'
elseif limit >= 0 and used + held + seconds > limit then
  reason = 'quota_exceeded'
end
local allowed = reason == 'ok'
-- refusals are stored too, so a retried reserve replays the same refusal; settle adds actual and outcome
redis.call('HSET', KEYS[1], 'seconds', ARGV[3], 'day', day, 'deadline', ARGV[7], 'instance', ARGV[8],
  'state', allowed and 'held' or 'refused', 'reason', reason)
if not allowed then
  return {0, reason, exact(used), exact(held), active, 0}
end

local now = ARGV[9]
if now == '' then
  local t = redis.call('TIME')
  now = exact(tonumber(t[1]) + tonumber(t[2]) / 1000000)
end
held = held + seconds
redis.call('HSET', KEYS[3], day, exact(held))
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[2])
redis.call('XADD', KEYS[5], '*', 'time', now, 'prompt_id', ARGV[2], 'kind', 'reserve', 'seconds', ARGV[3],
  'day', day, 'outcome', '')
return {1, reason, exact(used), exact(held), active + 1, 0}
