-- An idle worker takes the next prompt in global weighted-fair order (one at a time: no prefetch).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 the worker (instance name, its consumer in the tenant streams' group)
-- The tenant is tenancy.cluster.next_tenant over the ready set (tenants under their cap with queued prompts):
-- the lowest number, then the fewest running, then the name. Its redelivered prompt goes first, else the next
-- entry of its stream (XREADGROUP: the entry stays pending under this worker until acked or reclaimed).
-- Virtual time advances to the started prompt's number (FairQueue.started).
-- The job records `asked`: when this worker began asking after its previous prompt (its first claim since), so
-- how long a worker idled while work was queued is claimed - max(created, asked), whatever ComfyUI did between
-- prompts before it asked (its gc, its output bookkeeping).
-- Returns {prompt id, attempt, tenant, number, payload}, or false when nothing may start.

local inst = ARGV[1]
local asking = key('asking', inst)
redis.call('SET', asking, now_ms(), 'NX', 'PX', 86400000)
for _ = 1, 8 do  -- a tenant listed with nothing to hand out is set right, and the next one tried
  local first = redis.call('ZRANGE', READY, 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  local t, fewest = nil, nil
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', READY, first[2], first[2])) do  -- ties, by name
    local running = num(redis.call('HGET', key('ten', name), 'running'))
    if fewest == nil or running < fewest then t, fewest = name, running end
  end
  local ten, stream = key('ten', t), key('s', t)
  local pid = redis.call('LPOP', key('retry', t))
  if pid then
    redis.call('XCLAIM', stream, GROUP, inst, 0, redis.call('HGET', key('job', pid), 'sid'), 'JUSTID')
  else
    local got = redis.call('XREADGROUP', 'GROUP', GROUP, inst, 'COUNT', 1, 'STREAMS', stream, '>')
    local entry = got and got[1] and got[1][2][1]
    if entry then
      pid = field(entry[2], 'pid')
      redis.call('HSET', ten, 'last', entry[1])
    end
  end
  if pid then
    local job = key('job', pid)
    local attempt = redis.call('HINCRBY', job, 'attempt', 1)
    local number = redis.call('HGET', job, 'number')
    redis.call('HSET', job, 'state', 'running', 'owner', inst, 'started', 0, 'claimed', now_ms(),
      'asked', redis.call('GET', asking), 'order', redis.call('INCR', P .. 'handed'))
    redis.call('DEL', asking)
    redis.call('HINCRBY', ten, 'running', 1)
    redis.call('HINCRBY', ten, 'queued', -1)
    redis.call('DECR', P .. 'queued')
    if tonumber(number) > num(redis.call('GET', P .. 'vt')) then redis.call('SET', P .. 'vt', number) end
    refresh(t)
    return {pid, attempt, t, number, redis.call('GET', key('body', pid)) or ''}
  end
  redis.call('HSET', ten, 'queued', 0)
  refresh(t)
end
return false
