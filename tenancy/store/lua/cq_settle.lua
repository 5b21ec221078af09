-- May this worker settle its prompt's quota? Once per prompt, and only by the worker that held the attempt to its
-- end: not by one fenced out (its lease ran out and the reaper failed or redelivered the prompt).
-- KEYS: 1 <prefix>ready (see cq_common.lua)
-- ARGV: 1 prompt id, 2 the worker, 3 its attempt
-- Returns 1 (settle it now, through the store's settle) or 0 (someone else did or will). The same worker and
-- attempt asking again (its outbox retrying a settle the store did not take) gets 1 again.

local job = key('job', ARGV[1])
local r = redis.call('HMGET', job, 'state', 'owner', 'attempt', 'settled')
local mine = ARGV[2] .. '#' .. ARGV[3]
if r[4] then return r[4] == mine and 1 or 0 end
local ran = r[1] == 'running' or r[1] == 'done' or r[1] == 'error' or r[1] == 'interrupted'
if not ran or r[2] ~= ARGV[2] or r[3] ~= ARGV[3] then return 0 end
redis.call('HSET', job, 'settled', mine)
return 1
