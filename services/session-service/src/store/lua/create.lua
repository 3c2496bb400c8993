-- Creates a session (register and login), keeping the user within the session cap.
--
-- KEYS[1]     session hash   {prefix}session:refresh:{<user_id>}:<session_id>
-- KEYS[2]     user's set     {prefix}session:user_sessions:{<user_id>}
-- KEYS[3..n]  the session hashes of the ids the caller read from the set
-- ARGV[1]  session id     ARGV[2] now (unix ms)    ARGV[3] lifetime (ms)
-- ARGV[4]  refresh jti    ARGV[5] access jti       ARGV[6] iat (unix s)
-- ARGV[7]  access exp (unix s)                     ARGV[8] refresh exp (unix s)
-- ARGV[9]  is_superuser ("1"/"0")                  ARGV[10] client IP   ARGV[11] user agent
-- ARGV[12] most live sessions per user (the cap)
-- ARGV[13..] the ids of KEYS[3..n], in the same order (KEYS[k] is ARGV[k + 10]'s)
--
-- Every key shares the hash tag {<user_id>}, so this runs on one Redis Cluster slot.
-- Returns the ids of the sessions it ended to stay within the cap (least recently used
-- first); ids whose session had already expired are dropped from the set, not returned.
--
-- A session has expired when its `expires_at` is not after `now` (the service's clock,
-- which tests move), whether or not Redis's TTL on the same instant has removed it yet.
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local cap = tonumber(ARGV[12])

-- Read first: which declared sessions still live, and when each was last used.
local declared, live, expired = {}, {}, {}
for k = 3, #KEYS do
  local id = ARGV[k + 10]
  declared[id] = true
  local s = redis.call('HMGET', KEYS[k], 'last_used_at', 'created_at', 'expires_at')
  local expires_at = tonumber(s[3])
  if s[1] and not (expires_at and expires_at <= now) then
    table.insert(live, {id = id, key = KEYS[k], used = tonumber(s[1]), created = tonumber(s[2]) or 0})
  else
    -- The session's lifetime is over: its id is stale, its hash (if still there) dead.
    table.insert(expired, {id = id, key = KEYS[k]})
  end
end
-- A member the caller did not declare was added after it read the set: a session
-- created moments ago by a concurrent login. It is live, and never the least recently
-- used, so it counts toward the cap without being read (nor touched).
local newer = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not declared[id] then
    newer = newer + 1
  end
end
table.sort(live, function(a, b)
  if a.used ~= b.used then return a.used < b.used end
  if a.created ~= b.created then return a.created < b.created end
  return a.id < b.id
end)

-- The new session is the first write: on a full Redis (maxmemory, noeviction) the
-- script fails right here, before it has changed anything.
-- gen/jti identify the one refresh token that may rotate; ajti/iat/aexp/rexp/su
-- describe the current pair (what it was signed from).
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

-- Over the cap (the new session included): end the least recently used.
local ended = {}
local excess = #live + newer + 1 - cap
for i = 1, math.min(excess, #live) do
  redis.call('DEL', live[i].key)
  redis.call('SREM', KEYS[2], live[i].id)
  table.insert(ended, live[i].id)
end
for _, stale in ipairs(expired) do
  redis.call('DEL', stale.key)
  redis.call('SREM', KEYS[2], stale.id)
end
return ended
