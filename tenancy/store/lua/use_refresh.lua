-- Use a rotating refresh token once; using it again revokes its whole family.
-- KEYS: 1 the token's hash, 2 the set of revoked families (both in the {id} slot)
-- ARGV: 1 now
-- Returns {'ok', data}, {'reused', data} or {'invalid'}; data is the token's record as stored.
local t = redis.call('HMGET', KEYS[1], 'data', 'used', 'family', 'expires')
if not t[1] then
  return {'invalid'}
end
if t[2] then
  redis.call('SADD', KEYS[2], t[3])
  return {'reused', t[1]}
end
if redis.call('SISMEMBER', KEYS[2], t[3]) == 1 or tonumber(t[4]) < tonumber(ARGV[1]) then
  return {'invalid'}
end
redis.call('HSET', KEYS[1], 'used', '1')
return {'ok', t[1]}
