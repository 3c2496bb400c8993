-- Creates a session (register and login).
--
-- KEYS[1]  session hash   {prefix}session:refresh:{<user_id>}:<session_id>
-- KEYS[2]  user's set     {prefix}session:user_sessions:{<user_id>}
-- ARGV[1]  session id     ARGV[2] now (unix ms)    ARGV[3] lifetime (ms)
-- ARGV[4]  refresh jti    ARGV[5] access jti       ARGV[6] iat (unix s)
-- ARGV[7]  access exp (unix s)                     ARGV[8] refresh exp (unix s)
-- ARGV[9]  is_superuser ("1"/"0")                  ARGV[10] client IP   ARGV[11] user agent
--
-- Both keys share the hash tag {<user_id>}, so this runs on one Redis Cluster slot.
-- Returns 1.
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])

-- gen/jti identify the one refresh token that may rotate; ajti/iat/aexp/rexp/su are
-- what re-signing needs to give a grace-window replay the identical pair.
redis.call('HSET', KEYS[1],
  'gen', 0, 'jti', ARGV[4], 'ajti', ARGV[5], 'iat', ARGV[6], 'aexp', ARGV[7], 'rexp', ARGV[8], 'su', ARGV[9],
  'prev_jti', '', 'rotated_at', 0, 'replays', 0,
  'created_at', now, 'last_used_at', now, 'expires_at', now + ttl,
  'ip', ARGV[10], 'ua', ARGV[11])
redis.call('PEXPIRE', KEYS[1], ttl)

redis.call('SADD', KEYS[2], ARGV[1])
-- The set lives as long as its longest-lived session. PTTL is -1 for a set without
-- a TTL, so a brand-new set always gets one. (EXPIRE ... GT would skip that case.)
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
