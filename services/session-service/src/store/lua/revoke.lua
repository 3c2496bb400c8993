-- Ends one session (logout, revoke-session, reuse).
--
-- KEYS[1]  session hash   {prefix}session:refresh:{<user_id>}:<session_id>
-- KEYS[2]  user's set     {prefix}session:user_sessions:{<user_id>}
-- ARGV[1]  session id
--
-- Returns 1 if a live session ended, 0 if there was none (already gone or expired).
local ended = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return ended
