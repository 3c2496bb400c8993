-- Lists one user's live sessions, and drops expired ones (hash gone, or `expires_at`
-- not after now) from the set.
--
-- KEYS[1]     user's set   {prefix}session:user_sessions:{<user_id>}
-- KEYS[2..n]  the session hashes of the ids the caller read from the set
-- ARGV[1]     now (unix ms, the service's clock)
-- ARGV[2..n]  those session ids: ARGV[k] is the id of KEYS[k]
--
-- Returns -1 if the set gained an id the caller did not declare (read it again);
-- otherwise a flat array, six entries per live session:
--   id, created_at, last_used_at, expires_at (unix ms), ip, user agent.
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
local out = {}
for k = 2, #KEYS do
  local id = ARGV[k]
  local s = redis.call('HMGET', KEYS[k], 'created_at', 'last_used_at', 'expires_at', 'ip', 'ua')
  local expires_at = tonumber(s[3])
  if s[1] and not (expires_at and expires_at <= now) then
    table.insert(out, id)
    for j = 1, 5 do
      table.insert(out, s[j])
    end
  else
    -- The session's lifetime is over: its id is stale, its hash (if still there) dead.
    redis.call('DEL', KEYS[k])
    redis.call('SREM', KEYS[1], id)
  end
end
return out
