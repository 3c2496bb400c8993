-- The second look of a miss: read the value and make sure the key has a generation
-- token, in one step, before the reader queries PostgreSQL.
-- KEYS[1]: the value key; KEYS[2]: its generation token (same hash tag, same slot).
-- ARGV[1]: a fresh random token, used only when none exists; ARGV[2]: the token's
-- lifetime in milliseconds.
-- Returns {value or nil, token}. The reader fills only if the token is still there
-- and unchanged (fill.lua). Every invalidation deletes the token, and eviction or a
-- restart may drop it too; a token is never reused (a new one is random), so any of
-- these between this step and the fill makes the fill fail, never succeed.
-- The lifetime is refreshed on every miss: it only has to outlast one load (a pool
-- checkout plus a statement, seconds); a load slower than that merely loses its fill.
-- Plain GET/SET/PEXPIRE, so it runs on Redis 7.0.
local value = redis.call('GET', KEYS[1])
local token = redis.call('GET', KEYS[2])
if token then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
else
  token = ARGV[1]
  redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
end
return {value, token}
