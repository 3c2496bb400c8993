-- Invalidate one cache entry: delete the value and bump its generation, so a fill that
-- read PostgreSQL before this moment (and saw the old generation) is refused.
-- KEYS[1]: the value key; KEYS[2]: its generation counter (same slot).
-- ARGV[1]: lifetime of the counter in milliseconds. It only has to outlive the longest
-- possible fill (a PostgreSQL statement, seconds); then it may go, and an absent
-- counter reads as "0", which no in-flight fill can still hold.
redis.call('DEL', KEYS[1])
local generation = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return generation
