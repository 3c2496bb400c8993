-- Records one revocation in the snapshot and publishes it (common/src/revocation.rs).
--
-- KEYS[1]  the snapshot: a sorted set of revocation JSON, scored by `until` (unix seconds
--          after which no access token the revocation refuses can be live)
-- ARGV[1]  the revocation JSON (also the message)
-- ARGV[2]  its `until`
-- ARGV[3]  now, unix seconds: entries whose `until` is before it are dropped, so the set
--          holds at most the revocations of one access-token lifetime
-- ARGV[4]  the pub/sub channel
--
-- One script, so the entry is in the snapshot before any subscriber hears of it: a
-- process that loads the snapshot after its subscription is confirmed misses nothing.
-- PUBLISH from a script reaches every node's subscribers in a Redis Cluster too.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
