-- A worker is alive: its liveness key, its name in the instance index, and its prompt's lease renewed (XCLAIM
-- JUSTID resets the pending entry's idle time without counting a delivery).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id ('' when idle), 2 the worker, 3 its attempt, 4 liveness in milliseconds
-- Returns {held, drain}: held 1 while the worker holds this attempt, 0 when it does not (fenced: it interrupts the
-- prompt and its result will be dropped); drain the mark of an operator's request to drain this worker ('' none).

local INSTANCES_KEPT_MS = 86400000  -- names not heard from for a day leave the index
local t = now_ms()
redis.call('SET', P .. 'inst:' .. ARGV[2], ARGV[1], 'PX', ARGV[4])
redis.call('ZADD', P .. 'instances', t, ARGV[2])
redis.call('ZREMRANGEBYSCORE', P .. 'instances', '-inf', t - INSTANCES_KEPT_MS)
local drain = redis.call('HGET', P .. 'drain', ARGV[2]) or ''
local r = holder(ARGV[1], ARGV[2], ARGV[3])
if not r then return {0, drain} end
redis.call('XCLAIM', key('s', r[4]), GROUP, ARGV[2], 0, r[5], 'JUSTID')
return {1, drain}
