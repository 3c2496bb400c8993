-- Lists one user's live sessions, and drops the ids of expired ones from the set.
--
-- KEYS[1]     user's set   {prefix}session:user_sessions:{<user_id>}
-- KEYS[2..n]  the session hashes of the ids the caller read from the set
-- ARGV[1..]   those session ids, in the same order as KEYS[2..n]
--
-- Returns -1 if the set gained an id the caller did not declare (read it again);
-- otherwise a flat array, six entries per live session:
--   id, created_at, last_used_at, expires_at (unix ms), ip, user agent.
local declared = {}
for _, id in ipairs(ARGV) do
  declared[id] = true
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not declared[id] then
    return -1
  end
end
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i - 1]
  local s = redis.call('HMGET', KEYS[i], 'created_at', 'last_used_at', 'expires_at', 'ip', 'ua')
  if s[1] then
    table.insert(out, id)
    for j = 1, 5 do
      table.insert(out, s[j])
    end
  else
    -- The hash expired with its lifetime; its id is stale.
    redis.call('SREM', KEYS[1], id)
  end
end
return out
