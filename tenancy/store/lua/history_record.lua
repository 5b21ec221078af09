-- A finished prompt's history entry joins its owner's history (store/cluster_history.py), then the owner's oldest
-- entries past its plan's retention (tenancy.shared_history.Retention) are trimmed.
-- KEYS: 1 the owner's order (zset: prompt id -> completion ms), 2 its entries (hash: prompt id -> JSON)
-- ARGV: 1 prompt id, 2 the record, 3 entries kept (the newest), 4 ms an entry is kept after it finished (0: no
--       age limit; else both keys expire that long after the owner's last record), 5 '1': only if the prompt has
--       no entry yet (its worker's result; the reaper's record of a prompt it failed replaces whatever is there)
-- The score is Redis's time, raised to one past the owner's newest when that is not older, so the order is the
-- order of completion as Redis saw it, strictly. A record written again (a retry) keeps its place.
-- Returns the number of entries trimmed.

local order, entries = KEYS[1], KEYS[2]
local pid, items, keep = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] == '1' and redis.call('HEXISTS', entries, pid) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', order, pid) then
  local at = now
  local newest = redis.call('ZRANGE', order, -1, -1, 'WITHSCORES')
  if newest[2] and tonumber(newest[2]) >= at then at = tonumber(newest[2]) + 1 end
  redis.call('ZADD', order, at, pid)
end
redis.call('HSET', entries, pid, ARGV[2])

local trimmed = 0
local function drop(ids)
  for i = 1, #ids, 500 do  -- unpack in chunks: Lua's stack holds a few thousand values at most
    local chunk = {unpack(ids, i, math.min(i + 499, #ids))}
    redis.call('ZREM', order, unpack(chunk))
    redis.call('HDEL', entries, unpack(chunk))
  end
  trimmed = trimmed + #ids
end
if keep > 0 then
  drop(redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. string.format('%d', now - keep)))
  redis.call('PEXPIRE', order, keep)
  redis.call('PEXPIRE', entries, keep)
else
  redis.call('PERSIST', order)
  redis.call('PERSIST', entries)
end
local excess = redis.call('ZCARD', order) - items
if excess > 0 then drop(redis.call('ZRANGE', order, 0, excess - 1)) end
return trimmed
