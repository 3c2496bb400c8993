-- Ends every session of one user (logout-all).
--
-- KEYS[1]     user's set   {prefix}session:user_sessions:{<user_id>}
-- KEYS[2..n]  the session hashes of the ids the caller read from the set
-- ARGV[1]     now (unix ms, the service's clock)
-- ARGV[2..n]  those session ids: ARGV[k] is the id of KEYS[k]
--
-- Scripts must name every key they touch in KEYS, so the caller reads the set first.
-- If a session was added since (a concurrent login), this returns -1 without changing
-- anything and the caller reads the set again. Otherwise it returns the number of live
-- sessions ended: sessions already expired (hash gone, or `expires_at` not after now)
-- are not counted.
local now = tonumber(ARGV[1])
local declared = {}
for k = 2, #ARGV do
  declared[ARGV[k]] = true
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not declared[id] then
    return -1
  end
end
local ended = 0
for k = 2, #KEYS do
  local expires_at = tonumber(redis.call('HGET', KEYS[k], 'expires_at'))
  if redis.call('DEL', KEYS[k]) == 1 and not (expires_at and expires_at <= now) then
    ended = ended + 1
  end
end
redis.call('DEL', KEYS[1])
return ended
