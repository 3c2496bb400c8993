-- Ends one session (logout, revoke-session, reuse).
--
-- KEYS[1]  session hash   {prefix}session:refresh:{<user_id>}:<session_id>
-- KEYS[2]  user's set     {prefix}session:user_sessions:{<user_id>}
-- KEYS[3]  issued pair    {prefix}session:issued:{<user_id>}:<session_id> (rotate.lua)
-- ARGV[1]  session id     ARGV[2] now (unix ms, the service's clock)
--
-- Returns 1 if a live session ended, 0 if there was none (already gone, or expired: its
-- `expires_at` not after now).
local expires_at = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
local existed = redis.call('DEL', KEYS[1]) == 1
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[2], ARGV[1])
if existed and not (expires_at and expires_at <= tonumber(ARGV[2])) then
  return 1
end
return 0
