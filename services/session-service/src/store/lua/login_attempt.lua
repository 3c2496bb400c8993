-- Admits one login attempt for an e-mail address, or refuses it while the address is
-- locked (the per-account login throttle, `store/login_throttle.rs`).
--
-- KEYS[1]  the address's record   {prefix}session:login_failures:{<hash of the e-mail>}
--          hash: n (attempts counted), until (unix ms: locked until then)
-- ARGV[1]  now (unix ms)          ARGV[2] window (ms)
-- ARGV[3..] the lock (ms) that the 1st, 2nd, ... counted attempt sets; the last one
--          applies to every attempt after it too
--
-- An admitted attempt is counted at once, as a failure, before its password is checked:
-- concurrent guesses cannot all slip in before the first of them fails. A successful
-- login deletes the record (the caller does, with DEL).
-- Returns 0 when the attempt may go ahead, otherwise the ms until the lock ends.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local record = redis.call('HMGET', KEYS[1], 'n', 'until')
local n, locked_until = tonumber(record[1]) or 0, tonumber(record[2]) or 0
if now < locked_until then
  return locked_until - now
end

n = n + 1
local lock = tonumber(ARGV[2 + math.min(n, #ARGV - 2)])
redis.call('HSET', KEYS[1], 'n', n, 'until', now + lock)
-- Forgotten one window after its lock ends: a fresh allowance starts at least a window
-- after the last counted attempt, so no window ever holds more than the allowance.
redis.call('PEXPIRE', KEYS[1], lock + window)
return 0
