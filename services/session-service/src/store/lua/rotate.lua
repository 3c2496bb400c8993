-- Rotates a session's refresh token, or answers a replay of the one just rotated.
--
-- KEYS[1]  session hash   {prefix}session:refresh:{<user_id>}:<session_id>
-- KEYS[2]  user's set     {prefix}session:user_sessions:{<user_id>}
-- KEYS[3]  issued pair    {prefix}session:issued:{<user_id>}:<session_id>
-- ARGV[1]  session id
-- ARGV[2]  presented generation                    ARGV[3] presented jti
-- ARGV[4]  now (unix ms)  ARGV[5] lifetime (ms)    ARGV[6] grace window (ms)
-- ARGV[7]  most replays answered in the grace window
-- ARGV[8]  new refresh jti                         ARGV[9] new access jti
-- ARGV[10] new iat (unix s)                        ARGV[11] new access exp (unix s)
-- ARGV[12] new refresh exp (unix s)                ARGV[13] is_superuser ("1"/"0")
-- ARGV[14] new access token   ARGV[15] new refresh token   ARGV[16] its expires_in (s)
--
-- The caller signs the new pair before calling; this script decides atomically whether
-- that pair becomes the session's, so concurrent refreshes of one token rotate once.
-- The pair that rotation issued is kept in KEYS[3] for the grace window only (its TTL
-- is the window), so a replay inside the window gets the very tokens issued the first
-- time without signing anything, and no copy of a token outlives the window. Every
-- path that ends the session deletes it too.
-- Returns one of:
--   {'missing'}   no such session (revoked, logged out, or expired: its `expires_at` is
--                 not after ARGV[4], the service's clock, whether or not Redis's TTL on the
--                 same instant has removed it yet; a hash still there is deleted);
--   {'rotated'}   the presented token was current; the new pair is now current;
--   {'grace', access, refresh, expires_in}
--                 the presented token was rotated moments ago: the pair that rotation
--                 issued;
--   {'gone'}      the same, but the issued pair has already expired from Redis (its TTL
--                 runs on Redis's clock, the window on the service's): the caller refuses
--                 the replay without ending the session;
--   {'reused'}    any other token of the session: the session has been revoked.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing'}
end
local s = redis.call('HMGET', KEYS[1], 'gen', 'jti', 'prev_jti', 'rotated_at', 'replays', 'expires_at')
local gen, jti, prev_jti = tonumber(s[1]), s[2], s[3]
local rotated_at, replays = tonumber(s[4]), tonumber(s[5])
local presented_gen, presented_jti = tonumber(ARGV[2]), ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local expires_at = tonumber(s[6])

if expires_at and expires_at <= now then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SREM', KEYS[2], ARGV[1])
  return {'missing'}
end

if presented_gen == gen and presented_jti == jti then
  redis.call('HSET', KEYS[1],
    'gen', gen + 1, 'jti', ARGV[8], 'ajti', ARGV[9], 'iat', ARGV[10], 'aexp', ARGV[11], 'rexp', ARGV[12],
    'su', ARGV[13], 'prev_jti', jti, 'rotated_at', now, 'replays', 0,
    'last_used_at', now, 'expires_at', now + ttl)
  -- Sliding lifetime: every rotation renews the session and its set.
  redis.call('PEXPIRE', KEYS[1], ttl)
  if redis.call('PTTL', KEYS[2]) < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  -- The issued pair replaces the previous one (of the generation now out of its window).
  redis.call('DEL', KEYS[3])
  local grace = tonumber(ARGV[6])
  if grace > 0 then
    redis.call('HSET', KEYS[3], 'gen', gen + 1, 'access', ARGV[14], 'refresh', ARGV[15],
      'expires_in', ARGV[16])
    redis.call('PEXPIRE', KEYS[3], grace)
  end
  return {'rotated'}
end

-- A browser with two tabs, or a client whose response was lost, presents the token it
-- just rotated: within the window, and a bounded number of times, it gets the same pair.
if presented_gen == gen - 1 and presented_jti == prev_jti
    and now - rotated_at <= tonumber(ARGV[6]) and replays < tonumber(ARGV[7]) then
  local p = redis.call('HMGET', KEYS[3], 'gen', 'access', 'refresh', 'expires_in')
  if tonumber(p[1]) ~= gen or not p[2] then
    return {'gone'}
  end
  redis.call('HINCRBY', KEYS[1], 'replays', 1)
  return {'grace', p[2], p[3], p[4]}
end

-- Anything else is an old token used again: someone may hold a stolen copy, so the
-- whole session ends and both holders must log in again.
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[1])
return {'reused'}
