-- Cancel a queued prompt (a running one is interrupted by its worker instead).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id, 2 seconds the record is kept
-- Returns {1, tenant, settle 0|1} when it was queued and is cancelled now (settle: the caller refunds it),
-- else {0, state, tenant} ('' for an unknown prompt id).

local pid = ARGV[1]
local job = key('job', pid)
local r = redis.call('HMGET', job, 'state', 'tenant', 'sid')
if r[1] ~= 'queued' then return {0, r[1] or '', r[2] or ''} end
local t, stream = r[2], key('s', r[2])
if redis.call('LREM', key('retry', t), 0, pid) > 0 then redis.call('XACK', stream, GROUP, r[3]) end
redis.call('XDEL', stream, r[3])
redis.call('HINCRBY', key('ten', t), 'queued', -1)
redis.call('DECR', P .. 'queued')
local settle = redis.call('HSETNX', job, 'settled', 'cancel')
finish(pid, t, 'cancelled', '', ARGV[2])
return {1, t, settle}
