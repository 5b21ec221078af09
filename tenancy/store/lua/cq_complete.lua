-- A worker's prompt ended: acked, and terminal, once, if the worker still holds this attempt.
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id, 2 the worker, 3 its attempt, 4 state (done | error | interrupted), 5 seconds the record is kept
-- Returns 1, or 0 when the attempt was taken over (a frozen worker woke after its lease): its result is dropped.

local r = holder(ARGV[1], ARGV[2], ARGV[3])
if not r then return 0 end
local t, stream = r[4], key('s', r[4])
redis.call('XACK', stream, GROUP, r[5])
redis.call('XDEL', stream, r[5])
redis.call('HINCRBY', key('ten', t), 'running', -1)
finish(ARGV[1], t, ARGV[4], '', ARGV[5])
return 1
