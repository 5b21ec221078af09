-- An idle worker takes the next prompt in global weighted-fair order (one at a time: no prefetch).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 the worker (instance name, its consumer in the tenant streams' group), 2 lookahead (1: none),
--       3 the affinity bound in fair units (0: off), 4... the model files the worker holds
-- The tenant is tenancy.cluster.next_tenant over the ready set (tenants under their cap with queued prompts):
-- the lowest number, then the fewest running, then the fewest queued, then the name. Which of its prompts starts is
-- tenancy.cluster.in_turn over its first `lookahead` queued ones: the retry list (redelivered and passed-over
-- prompts, by number), then its stream after the entry last handed out. A stream entry is handed out with
-- XREADGROUP (it stays pending under this worker until acked or reclaimed); the entries read past to reach it are
-- parked under the retry consumer and appended to the retry list (their numbers are above every number in it).
-- The started prompt takes the tenant's lowest number, each passed-over one the next one's
-- (tenancy.cluster.renumbered): the tenants' turns come in the order they would without lookahead.
-- Virtual time advances to that lowest number (FairQueue.started).
-- The job records `asked`: when this worker began asking after its previous prompt (its first claim since), so
-- how long a worker idled while work was queued is claimed - max(created, asked), whatever ComfyUI did between
-- prompts before it asked (its gc, its output bookkeeping).
-- With affinity on (tenancy.affinity): the tenant is tenancy.affinity.affine_tenant (the first in next_tenant order
-- among those numbered within the bound of the lowest whose window holds a warm prompt: one naming models, all of
-- them held by the worker), its prompt in_turn over the warm ones of its window; virtual time advances to the lowest number,
-- not the served one (a newcomer queues behind the tenant passed over, as in fair order); the job records `warm`.
-- Returns {prompt id, attempt, tenant, number, payload, models}, or false when nothing may start.

local inst, lookahead = ARGV[1], math.max(tonumber(ARGV[2] or '1') or 1, 1)
local bound = math.max(tonumber(ARGV[3] or '0') or 0, 0)
local CANDIDATES = 16  -- tenancy.affinity.CANDIDATES
local held = {}
for i = 4, #ARGV do held[ARGV[i]] = true end
local asking = key('asking', inst)
redis.call('SET', asking, now_ms(), 'NX', 'PX', 86400000)

local function warm(models)  -- tenancy.affinity.warm: names models, and holds every one
  local any = false
  for model in string.gmatch(models or '', '[^\n]+') do
    if not held[model] then return false end
    any = true
  end
  return any
end

-- A tenant's first `lookahead` queued prompts: {estimate, pid, stream entries to read (0: from the retry list),
-- number, warm}: the retry list first, then its stream after the entry last handed out.
local function window_of(t)
  local window = {}
  for _, queued in ipairs(redis.call('LRANGE', key('retry', t), 0, lookahead - 1)) do
    local j = redis.call('HMGET', key('job', queued), 'seconds', 'number', 'models')
    window[#window + 1] = {num(j[1]), queued, 0, num(j[2]), warm(j[3])}
  end
  if #window < lookahead then
    local last = redis.call('HGET', key('ten', t), 'last') or '0-0'
    local following = redis.call('XRANGE', key('s', t), '(' .. last, '+', 'COUNT', lookahead - #window)
    for i, entry in ipairs(following) do
      window[#window + 1] = {num(field(entry[2], 'seconds')), field(entry[2], 'pid'), i,
        num(field(entry[2], 'number')), warm(field(entry[2], 'models'))}
    end
  end
  return window
end

local function any_warm(window)
  for _, queued in ipairs(window) do if queued[5] then return true end end
  return false
end

local function before(a, b)  -- tenancy.cluster.next_tenant's order over {tenant, number, running, queued}
  if a[2] ~= b[2] then return a[2] < b[2] end
  if a[3] ~= b[3] then return a[3] < b[3] end
  if a[4] ~= b[4] then return a[4] < b[4] end
  return a[1] < b[1]
end

for _ = 1, 8 do  -- a tenant listed with nothing to hand out is set right, and the next one tried
  local first = redis.call('ZRANGE', READY, 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  local lowest = tonumber(first[2])
  local t, fewest = nil, nil
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', READY, first[2], first[2])) do  -- ties, by name
    local c = redis.call('HMGET', key('ten', name), 'running', 'queued')
    local counts = {num(c[1]), num(c[2])}
    if fewest == nil or counts[1] < fewest[1] or (counts[1] == fewest[1] and counts[2] < fewest[2]) then
      t, fewest = name, counts
    end
  end
  local window = nil
  if bound > 0 then  -- tenancy.affinity.affine_tenant: the first warm one in fair order within the bound
    local best = nil
    local near = redis.call('ZRANGEBYSCORE', READY, first[2], lowest + bound, 'WITHSCORES', 'LIMIT', 0, CANDIDATES)
    for i = 1, #near, 2 do
      local seen = window_of(near[i])
      if any_warm(seen) then
        local c = redis.call('HMGET', key('ten', near[i]), 'running', 'queued')
        local candidate = {near[i], tonumber(near[i + 1]), num(c[1]), num(c[2]), seen}
        if best == nil or before(candidate, best) then best = candidate end
      end
    end
    if best then t, window = best[1], best[5] end
  end
  window = window or window_of(t)
  local ten, stream = key('ten', t), key('s', t)
  local turn = head(t)
  if bound > 0 then turn = lowest end
  local pid
  local only_warm = bound > 0 and any_warm(window)
  local pick = 0  -- tenancy.cluster.in_turn: the longest (of the warm ones, with affinity), the earliest of equals
  for i, queued in ipairs(window) do
    if (queued[5] or not only_warm) and (pick == 0 or queued[1] > window[pick][1]) then pick = i end
  end
  for i = 1, pick - 1 do  -- tenancy.cluster.renumbered: the turn takes the lowest number, passed-over ones move up
    redis.call('HSET', key('job', window[i][2]), 'number', window[i + 1][4])
  end
  if pick > 1 then redis.call('HSET', key('job', window[pick][2]), 'number', window[1][4]) end
  if pick > 0 and window[pick][3] == 0 then
    pid = window[pick][2]
    redis.call('LREM', key('retry', t), 1, pid)
    redis.call('XCLAIM', stream, GROUP, inst, 0, redis.call('HGET', key('job', pid), 'sid'), 'JUSTID')
  elseif pick > 0 then
    local got = redis.call('XREADGROUP', 'GROUP', GROUP, inst, 'COUNT', window[pick][3], 'STREAMS', stream, '>')
    local entries = got and got[1] and got[1][2] or {}
    for i, entry in ipairs(entries) do
      local id = field(entry[2], 'pid')
      if i < #entries then  -- read past: parked, still queued, first in the tenant's next window
        redis.call('XCLAIM', stream, GROUP, RETRY_CONSUMER, 0, entry[1], 'JUSTID')
        redis.call('RPUSH', key('retry', t), id)
      else
        pid = id
        redis.call('HSET', ten, 'last', entry[1])
      end
    end
  end
  if pid then
    local job = key('job', pid)
    local attempt = redis.call('HINCRBY', job, 'attempt', 1)
    local number = redis.call('HGET', job, 'number')
    redis.call('HSET', job, 'state', 'running', 'owner', inst, 'started', 0, 'claimed', now_ms(),
      'asked', redis.call('GET', asking), 'order', redis.call('INCR', P .. 'handed'))
    if bound > 0 then redis.call('HSET', job, 'warm', window[pick][5] and 1 or 0) end
    redis.call('DEL', asking)
    redis.call('HINCRBY', ten, 'running', 1)
    redis.call('HINCRBY', ten, 'queued', -1)
    redis.call('DECR', P .. 'queued')
    if turn and turn > num(redis.call('GET', P .. 'vt')) then redis.call('SET', P .. 'vt', turn) end
    refresh(t)
    return {pid, attempt, t, number, redis.call('GET', key('body', pid)) or '', redis.call('HGET', job, 'models') or ''}
  end
  redis.call('HSET', ten, 'queued', 0)
  refresh(t)
end
return false
