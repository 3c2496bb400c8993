-- GCRA (generic cell rate algorithm) rate limit, one bucket per key.
--
-- KEYS[1]  the bucket, holding its "theoretical arrival time" (TAT) in microseconds.
-- ARGV[1]  emission interval in microseconds: 60 s / limit, the spacing of a steady flow.
-- ARGV[2]  burst: how many calls may arrive at once on an idle bucket (= the limit).
--
-- Returns {allowed (1/0), remaining calls now, retry-after µs, µs until the bucket is full again}.
--
-- The clock is Redis's own TIME, so gateways with skewed clocks share one notion of
-- "now". One key only, so it runs unchanged on Redis Cluster. Lua numbers are doubles:
-- epoch microseconds (~1.8e15) are exact below 2^53.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
-- The earliest moment this call conforms: the bucket may be at most `burst` intervals ahead.
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end

-- The key disappears when the bucket has drained: an idle client costs no memory.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
