-- Fill a cache entry only if nobody invalidated it since the reader looked.
-- KEYS[1]: the value key; KEYS[2]: its generation counter (same hash tag, same slot).
-- ARGV[1]: the generation the reader saw before querying PostgreSQL ("0" = none);
-- ARGV[2]: the encoded value; ARGV[3]: TTL in milliseconds.
-- Returns 1 when the value was written, 0 when an invalidation came in between (the
-- value may be stale, so it is dropped; the next reader fills again).
-- Plain GET/SET, so it runs on Redis 7.0 (no SET IFEQ).
local current = redis.call('GET', KEYS[2]) or '0'
if current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
