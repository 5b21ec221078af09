-- GCRA: one request per interval with bursts of `burst`; the key holds the theoretical arrival time (TAT).
-- KEYS: 1 the limit's TAT
-- ARGV: 1 interval seconds, 2 burst, 3 now ('' for the server's TIME)
-- Returns '0' when allowed, else the exact seconds until a request would be (%.17g).
local function exact(x) return string.format('%.17g', x) end

local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local tolerance = interval * math.max(burst - 1, 0)
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = math.max(tonumber(stored), now)
end
if tat - now > tolerance then
  return exact(tat - now - tolerance)
end
local next_tat = tat + interval
-- the key outlives its TAT by a second; once expired, a fresh TAT equals what the stored one would give
-- (a whole number of milliseconds). Numbers go to redis.call as numbers: Redis writes them exactly, in C.
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) * 1000) + 1000)
return '0'
