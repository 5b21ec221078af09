-- Settle one held reservation exactly once: release its hold and charge the actual seconds to its own day.
-- KEYS: 1 reservation hash, 2 usage hash (<day>:used, <day>:held), 3 held prompts, 4 ledger stream;
--       5, when abandoning, the prompt id's claim (see reserve.lua)
-- ARGV: 1 prompt id, 2 actual seconds, 3 outcome, 4 now ('' for the server's TIME), 5 seconds the settled
--       reservation is kept (a retried settle or reserve of the prompt meanwhile finds it), 6 '1' to abandon
--       (the prompt was never queued), 7 the admission attempt abandoned: only that attempt's hold is refunded,
--       and its claim released; when that attempt reserved nothing, a refusal is stored for it, so that its
--       reserve still on its way (sent before its caller gave up on the store) replays it instead of holding
--       seconds nobody will settle
-- Returns false when nothing is held under that id (unknown, refused or already settled),
-- else {seconds, day, deadline, instance} of the reservation. Numbers go to redis.call as numbers (see reserve.lua).

local function ms(x) return math.floor(x * 1000 + 0.5) / 1000 end  -- sums stay whole milliseconds (reserve.lua)

local r = redis.call('HMGET', KEYS[1], 'state', 'seconds', 'day', 'deadline', 'instance', 'attempt')
local abandon = ARGV[6] == '1'
local own = (r[6] or '') == ARGV[7]
if r[1] ~= 'held' or (abandon and not own) then
  if abandon and (not r[1] or (r[1] ~= 'held' and not own)) then
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'state', 'refused', 'reason', ARGV[3], 'attempt', ARGV[7])
    redis.call('EXPIRE', KEYS[1], ARGV[5])
  end
  return false
end
if abandon and KEYS[5] then
  redis.call('DEL', KEYS[5])
end
local day = r[3]
local now = ARGV[4]
if now == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
redis.call('HSET', KEYS[1], 'state', 'settled', 'actual', ARGV[2], 'outcome', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local usage = redis.call('HMGET', KEYS[2], day .. ':used', day .. ':held')
local used, held = tonumber(usage[1] or '0'), tonumber(usage[2] or '0')
redis.call('HSET', KEYS[2], day .. ':used', ms(used + tonumber(ARGV[2])),
  day .. ':held', math.max(0, ms(held - tonumber(r[2]))))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'time', now, 'prompt_id', ARGV[1], 'kind', 'settle', 'seconds', ARGV[2],
  'day', day, 'outcome', ARGV[3])
return {r[2], day, r[4], r[5]}
