-- Ends every session of one user (logout-all).
--
-- KEYS[1]     user's set   {prefix}session:user_sessions:{<user_id>}
-- KEYS[2..n]  for each id the caller read from the set, its session hash and then its
--             issued pair (rotate.lua): KEYS[2k - 2] and KEYS[2k - 1] are ARGV[k]'s
-- ARGV[1]     now (unix ms, the service's clock)
-- ARGV[2..m]  those session ids
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
for k = 2, #ARGV do
  local session, issued = KEYS[2 * k - 2], KEYS[2 * k - 1]
  local expires_at = tonumber(redis.call('HGET', session, 'expires_at'))
  if redis.call('DEL', session) == 1 and not (expires_at and expires_at <= now) then
    ended = ended + 1
  end
  redis.call('DEL', issued)
end
redis.call('DEL', KEYS[1])
return ended
