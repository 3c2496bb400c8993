-- Fill a cache entry only if nobody invalidated it since the reader looked.
-- KEYS[1]: the value key; KEYS[2]: its generation token (same hash tag, same slot).
-- ARGV[1]: the token read.lua gave the reader before it queried PostgreSQL;
-- ARGV[2]: the encoded value; ARGV[3]: TTL in milliseconds.
-- Returns 1 when the value was written, 0 when the token is gone or another one: an
-- invalidation (which deletes the token), an eviction or a restart came in between,
-- so the value may be stale and is dropped; the next reader fills again.
-- An absent token never matches: "nothing recorded" must not read as "nothing happened".
local current = redis.call('GET', KEYS[2])
if current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
