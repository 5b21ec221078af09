-- A worker is alive: its liveness key, and its prompt's lease renewed (XCLAIM JUSTID resets the pending entry's
-- idle time without counting a delivery).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id ('' when idle), 2 the worker, 3 its attempt, 4 liveness in milliseconds
-- Returns 1 while the worker holds this attempt, 0 when it does not (fenced: it interrupts the prompt and its
-- result will be dropped).

redis.call('SET', P .. 'inst:' .. ARGV[2], ARGV[1], 'PX', ARGV[4])
local r = holder(ARGV[1], ARGV[2], ARGV[3])
if not r then return 0 end
redis.call('XCLAIM', key('s', r[4]), GROUP, ARGV[2], 0, r[5], 'JUSTID')
return 1
