-- Shared by every cq_*.lua script of the cluster queue (prepended to each when it is loaded).
-- Every key lives under one prefix with the hash tag {cq}, so a script may touch the streams of tenants it picks
-- at run time and still run on one Redis Cluster slot. KEYS[1] of every script is <prefix>ready; the others are
-- derived from it (store/cluster_queue.py's docstring lists them).
local READY = KEYS[1]
local P = string.sub(READY, 1, #READY - 5)
local GROUP = 'gpu'
local RETRY_CONSUMER = '~redeliver'  -- holds a redelivered prompt's stream entry until a worker claims it again

local function key(kind, name) return P .. kind .. ':' .. name end
local function num(x) return tonumber(x or '0') or 0 end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function field(fields, name)
  for i = 1, #fields, 2 do if fields[i] == name then return fields[i + 1] end end
  return nil
end

-- The number of a tenant's next prompt: a redelivered one first (it keeps its place), else the first stream
-- entry after the last one handed out.
local function head(t)
  local retry = redis.call('LINDEX', key('retry', t), 0)
  if retry then return num(redis.call('HGET', key('job', retry), 'number')) end
  local last = redis.call('HGET', key('ten', t), 'last') or '0-0'
  local following = redis.call('XRANGE', key('s', t), '(' .. last, '+', 'COUNT', 1)
  if #following == 0 then return nil end
  return tonumber(field(following[1][2], 'number'))
end

-- A queued prompt goes back into its tenant's retry list at its number's place: the list stays in number order.
local function retry_insert(t, pid)
  local list = key('retry', t)
  local number = num(redis.call('HGET', key('job', pid), 'number'))
  for _, queued in ipairs(redis.call('LRANGE', list, 0, -1)) do
    if num(redis.call('HGET', key('job', queued), 'number')) > number then
      redis.call('LINSERT', list, 'BEFORE', queued, pid)
      return
    end
  end
  redis.call('RPUSH', list, pid)
end

-- Every change to a tenant's counts ends here: it is offered to idle workers at its next prompt's number iff it
-- has queued prompts and runs fewer than its cap, 0 meaning none (tenancy.cluster.eligible).
local function refresh(t)
  local ten = redis.call('HMGET', key('ten', t), 'queued', 'running', 'cap')
  local queued, running, cap = num(ten[1]), num(ten[2]), num(ten[3])
  local number = nil
  if queued > 0 and (cap <= 0 or running < cap) then number = head(t) end
  if number then redis.call('ZADD', READY, number, t) else redis.call('ZREM', READY, t) end
  if queued <= 0 and running <= 0 then redis.call('SREM', P .. 'tenants', t) end
end

-- {state, owner, attempt, tenant, stream id} of a prompt while `inst` runs this attempt of it, else nil: the
-- fence every change a worker makes passes first.
local function holder(pid, inst, attempt)
  local r = redis.call('HMGET', key('job', pid), 'state', 'owner', 'attempt', 'tenant', 'sid')
  if r[1] == 'running' and r[2] == inst and r[3] == attempt then return r end
  return nil
end

-- A prompt reaches a terminal state (its counts already adjusted by the caller): kept `kept` seconds for readers.
local function finish(pid, t, state, reason, kept)
  local job = key('job', pid)
  redis.call('HSET', job, 'state', state, 'reason', reason, 'finished', now_ms())
  redis.call('EXPIRE', job, kept)
  redis.call('DEL', key('body', pid))
  refresh(t)
end

