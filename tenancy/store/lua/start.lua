-- Note when a held reservation's prompt began executing, the first time only (the reaper charges by it).
-- KEYS: 1 reservation hash. ARGV: 1 when it started (seconds since the epoch).
-- Nothing happens when the reservation is not held (unknown, refused or settled): no stray hash is created.

if redis.call('HGET', KEYS[1], 'state') == 'held' then
  redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
end
return false
