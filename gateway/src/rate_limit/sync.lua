-- Reconciliation of the API limit (gateway/src/rate_limit/api.rs, "Reconciliation"): adds the calls one
-- gateway admitted from its local state to the shared GCRA state of each key, and
-- returns how far each shared TAT now is ahead of Redis's clock, for the gateway to adopt.
--
-- KEYS[i]     a bucket, `{prefix}rate:api:{<user_id>}:<endpoint>`: its TAT in
--             microseconds of Redis's clock (the format rate_limit.gcra.lua keeps).
-- ARGV[1]     emission interval in microseconds (60 s / limit).
-- ARGV[2i]    calls the gateway admitted on KEYS[i] since its last report (at least 1).
-- ARGV[2i+1]  microseconds since the first of them was admitted.
--
-- Returns, per key, the microseconds its TAT is ahead of now (0: the bucket is drained).
--
-- The calls were already admitted, so they are added whatever the state: there is no
-- refusal here. Calls a gateway let through before it knew of the other gateways' put
-- the bucket in debt (TAT beyond the burst), and every gateway then refuses until it has
-- drained. The calls are counted from the arrival of the first of them (now - age), not
-- from now, so a report's delay does not make the limit stricter than an exact GCRA;
-- durations only cross the wire, so the gateways' clocks need not agree with Redis's.
--
-- All keys of one call share a cluster slot (the gateway groups them). Lua numbers are
-- doubles: epoch microseconds (~1.8e15) are exact below 2^53.
local interval = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local ahead = {}
for i, key in ipairs(KEYS) do
  local calls = tonumber(ARGV[2 * i])
  local first = now - tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key)) or first
  if tat < first then
    tat = first
  end
  tat = tat + calls * interval
  if tat > now then
    -- The key disappears when the bucket has drained: an idle user costs no memory.
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    ahead[i] = tat - now
  else
    ahead[i] = 0
  end
end
return ahead
