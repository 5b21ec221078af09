-- Take back the prompts of workers whose lease ran out (no heartbeat for `lease` ms): run by every instance,
-- idempotent (a prompt is reaped once: its state leaves `running` in the same step).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 lease in milliseconds, 2 most redeliveries of a prompt that never started, 3 seconds a terminal record
--       is kept, 4 most stale entries looked at per tenant
-- What happens is tenancy.cluster.reap_action: one that never started goes back into its tenant's retry list at its
-- number's place, ahead of the stream (its entry held by the redelivery consumer); one that started fails once with reason worker_lost (so does
-- one redelivered too often, with redelivery_limit), and its settlement is claimed here.
-- Returns {prompt id, tenant, action, started 0|1, seconds reserved, settle 0|1, payload, number} per prompt reaped
-- (the payload and number of a failed one, for the history entry and the messages that end it for its client;
-- '' and 0 for one redelivered).

local out = {}
for _, t in ipairs(redis.call('SMEMBERS', P .. 'tenants')) do
  local ten, stream = key('ten', t), key('s', t)
  if num(redis.call('HGET', ten, 'running')) > 0 then
    for _, e in ipairs(redis.call('XPENDING', stream, GROUP, 'IDLE', ARGV[1], '-', '+', ARGV[4])) do
      local sid = e[1]
      local entry = redis.call('XRANGE', stream, sid, sid)[1]
      local pid = entry and field(entry[2], 'pid')
      local job = pid and key('job', pid)
      local r = job and redis.call('HMGET', job, 'state', 'started', 'attempt', 'seconds') or {}
      if e[2] ~= RETRY_CONSUMER and r[1] == 'running' then
        redis.call('HINCRBY', ten, 'running', -1)
        if r[2] == '0' and tonumber(r[3]) <= tonumber(ARGV[2]) then
          redis.call('XCLAIM', stream, GROUP, RETRY_CONSUMER, 0, sid, 'JUSTID')
          retry_insert(t, pid)
          redis.call('HSET', job, 'state', 'queued', 'owner', '')
          redis.call('HINCRBY', ten, 'queued', 1)
          redis.call('INCR', P .. 'queued')
          refresh(t)
          out[#out + 1] = {pid, t, 'redeliver', 0, r[4], 0, '', 0}
        else
          local reason = r[2] == '1' and 'worker_lost' or 'redelivery_limit'
          redis.call('XACK', stream, GROUP, sid)
          redis.call('XDEL', stream, sid)
          local settle = redis.call('HSETNX', job, 'settled', 'reaper')
          local payload, number = redis.call('GET', key('body', pid)) or '', redis.call('HGET', job, 'number')
          finish(pid, t, 'failed', reason, ARGV[3])
          out[#out + 1] = {pid, t, reason, tonumber(r[2]), r[4], settle, payload, num(number)}
        end
      end
    end
  end
end
return out
