-- A worker's prompt began executing: from now on a lost worker fails it (worker_lost) instead of redelivering.
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id, 2 the worker, 3 its attempt
-- Returns 1, or 0 when the worker no longer holds this attempt (fenced: it must not run the prompt).

local r = holder(ARGV[1], ARGV[2], ARGV[3])
if not r then return 0 end
redis.call('HSET', key('job', ARGV[1]), 'started', 1, 'began', now_ms())
return 1
