-- Reserve quota seconds for one prompt, atomically and idempotently on its prompt id.
-- KEYS: 1 reservation hash, 2 usage hash (<day>:used, <day>:held), 3 held prompts (zset by deadline),
--       4 ledger stream (all share the tenant's {hash tag}); 5, when admitting, the prompt id's claim (outside
--       the tenant's slot: the one key that makes the prompt id unique across tenants)
-- ARGV: 1 prompt id, 2 seconds, 3 limit (negative: unlimited), 4 max active, 5 day, 6 deadline, 7 instance,
--       8 now ('' for the server's TIME), 9 seconds a refusal or a claim is kept, 10 the admission attempt,
--       11 the claim's value (the tenant)
-- Without KEYS[5] (reserve): any earlier decision under the prompt id replays, refusals are kept for that.
-- With it (admit): only this attempt's own decision replays; an id claimed or held by an earlier admission is
-- refused as prompt_id_taken; a refusal leaves nothing behind; an admission claims the id (SET, the claim
-- being checked absent in this same script) with its hold.
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
local claim = KEYS[5]
local previous = redis.call('HMGET', KEYS[1], 'reason', 'attempt', 'state')
if previous[1] and (not claim or (previous[2] or '') == ARGV[10]) then
  return {previous[1] == 'ok' and 1 or 0, previous[1], used_text, held_text, active, 1}
end
if claim and (previous[3] == 'held' or redis.call('EXISTS', claim) == 1) then
  return {0, 'prompt_id_taken', used_text, held_text, active, 0}
end

local seconds, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
-- the quota decision: tenancy.admission.quota_reason, which the SQLite store calls (keep the two alike)
local reason = 'ok'
if active >= tonumber(ARGV[4]) then
  reason = 'concurrency_limit'
elseif limit >= 0 and used + held + seconds > limit then
  reason = 'quota_exceeded'
end
-- refusals are stored too, so a retried reserve replays the same refusal; settle adds actual and outcome
if reason ~= 'ok' then
  if not claim then
    redis.call('HSET', KEYS[1], 'state', 'refused', 'reason', reason)
    redis.call('EXPIRE', KEYS[1], ARGV[9])
  end
  return {0, reason, used_text, held_text, active, 0}
end
if claim then  -- what an earlier attempt left (its refusal kept by abandon, a settlement) goes
  redis.call('DEL', KEYS[1])
  redis.call('SET', claim, ARGV[11], 'EX', ARGV[9])
end
redis.call('HSET', KEYS[1], 'seconds', ARGV[2], 'day', day, 'deadline', ARGV[6], 'instance', ARGV[7],
  'state', 'held', 'reason', reason, 'attempt', ARGV[10])

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
