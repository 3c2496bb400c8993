-- Ends every session of one user (logout-all).
--
-- KEYS[1]     user's set   {prefix}session:user_sessions:{<user_id>}
-- KEYS[2..n]  the session hashes of the ids the caller read from the set
-- ARGV[1..]   those session ids, in the same order as KEYS[2..n]
--
-- Scripts must name every key they touch in KEYS, so the caller reads the set first.
-- If a session was added since (a concurrent login), this returns -1 without changing
-- anything and the caller reads the set again. Otherwise it returns the number of live
-- sessions ended: ids whose hash already expired are not counted.
local declared = {}
for _, id in ipairs(ARGV) do
  declared[id] = true
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not declared[id] then
    return -1
  end
end
local ended = 0
for i = 2, #KEYS do
  ended = ended + redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[1])
return ended
