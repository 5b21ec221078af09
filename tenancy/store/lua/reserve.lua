-- Reserve quota seconds for one prompt, atomically and idempotently on its prompt id.
-- KEYS: 1 reservation hash, 2 usage hash (<day>:used, <day>:held), 3 held prompts (zset by deadline),
--       4 ledger stream (all share the tenant's {hash tag})
-- ARGV: 1 prompt id, 2 seconds, 3 limit (negative: unlimited), 4 max active, 5 day, 6 deadline, 7 instance,
--       8 now ('' for the server's TIME), 9 seconds a refusal is kept (for replay)
-- Returns {allowed 0|1, reason, used, held, active, replay 0|1}: used and held as stored, before this reservation
-- (the caller adds the seconds it reserved). Numbers go to redis.call as numbers: Redis writes them as text
-- that reads back to the same double, and in C (string.format in Lua cost more than the commands it fed).

-- Seconds are whole milliseconds (the estimate and the measure are rounded so): sums are rounded back to them,
-- so that a day's hold returns to exactly 0 when its last prompt settles, not to a float's residue.
local function ms(x) return math.floor(x * 1000 + 0.5) / 1000 end

local day = ARGV[5]
local held_field = day .. ':held'
local usage = redis.call('HMGET', KEYS[2], day .. ':used', held_field)
local used_text, held_text = usage[1] or '0', usage[2] or '0'  -- as stored: exact text already
local used, held = tonumber(used_text), tonumber(held_text)
local active = redis.call('ZCARD', KEYS[3])
local previous = redis.call('HGET', KEYS[1], 'reason')
if previous then
  return {previous == 'ok' and 1 or 0, previous, used_text, held_text, active, 1}
end

local seconds, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local reason = 'ok'
if active >= tonumber(ARGV[4]) then
  reason = 'concurrency_limit'
elseif limit >= 0 and used + held + seconds > limit then
  reason = 'quota_exceeded'
end
-- refusals are stored too, so a retried reserve replays the same refusal; settle adds actual and outcome
if reason ~= 'ok' then
  redis.call('HSET', KEYS[1], 'state', 'refused', 'reason', reason)
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  return {0, reason, used_text, held_text, active, 0}
end
redis.call('HSET', KEYS[1], 'seconds', ARGV[2], 'day', day, 'deadline', ARGV[6], 'instance', ARGV[7],
  'state', 'held', 'reason', reason)

local now = ARGV[8]
if now == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
redis.call('HSET', KEYS[2], held_field, ms(held + seconds))
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'time', now, 'prompt_id', ARGV[1], 'kind', 'reserve', 'seconds', ARGV[2],
  'day', day, 'outcome', '')
return {1, reason, used_text, held_text, active + 1, 0}
