-- Queue one admitted prompt for the whole cluster, idempotently on its prompt id.
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id, 2 tenant, 3 fair units (tenancy.cluster.fair_units), 4 the tenant's running cap (0: none),
--       5 payload (what the worker runs), 6 seconds reserved (charged if its worker is lost after it started),
--       7 the model files it names (tenancy.affinity.packed; '' none)
-- Its number is the FairQueue rule across instances: max(virtual now, the tenant's last finish) + units.
-- Returns {number, 1} when queued now, {number, 0} when the prompt id was queued before (a retried call).

local pid, t = ARGV[1], ARGV[2]
local job = key('job', pid)
local known = redis.call('HGET', job, 'number')
if known then return {tonumber(known), 0} end
local ten, stream = key('ten', t), key('s', t)
local number = math.max(num(redis.call('GET', P .. 'vt')), num(redis.call('HGET', ten, 'flast'))) + tonumber(ARGV[3])
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
end
local models = ARGV[7] or ''
local sid = redis.call('XADD', stream, '*', 'pid', pid, 'number', number, 'seconds', ARGV[6], 'models', models)
redis.call('HSET', ten, 'flast', number, 'cap', ARGV[4])
redis.call('HINCRBY', ten, 'queued', 1)
redis.call('HSET', job, 'tenant', t, 'sid', sid, 'number', number, 'state', 'queued', 'attempt', 0, 'started', 0,
  'seconds', ARGV[6], 'models', models, 'created', now_ms())
redis.call('SET', key('body', pid), ARGV[5])
redis.call('SADD', P .. 'tenants', t)
redis.call('INCR', P .. 'queued')
refresh(t)
return {number, 1}
