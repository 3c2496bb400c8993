-- POST /api/v1/auth/refresh, run with -t 32 -c 32: each thread owns one connection
-- and one session, and chains its rotating token: response() keeps the refresh
-- token of each answer and the next request() sends it. setup() hands each thread
-- a different user's refresh token, from $BENCH_DATA/$BENCH_REFRESH_FILE (refresh.txt:
-- a run uses its sessions up, so the profiling rerun gets fresh ones).
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = bench.setup
done = bench.done

local refresh_tokens = bench.data(os.getenv("BENCH_REFRESH_FILE") or "refresh.txt")
local handed_out = 0
setup = function(thread)
  bench.setup(thread)
  handed_out = handed_out + 1
  thread:set("refresh_token", refresh_tokens[(handed_out - 1) % #refresh_tokens + 1])
end
function request()
  return wrk.format("POST", "/api/v1/auth/refresh", { ["Content-Type"] = "application/json" },
    '{"refresh_token":"' .. refresh_token .. '"}')
end
-- Counted per thread and summed in done(): a chain that really rotates gets a new
-- token in every 200 answer; an unchanged one would mean the grace window answered.
rotations, unchanged = 0, 0
function response(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token and token ~= refresh_token then
      refresh_token = token
      rotations = rotations + 1
    else
      unchanged = unchanged + 1
    end
  end
end
done = function(summary, latency, requests)
  local rotated, same = 0, 0
  for _, thread in ipairs(bench.threads) do
    rotated = rotated + (thread:get("rotations") or 0)
    same = same + (thread:get("unchanged") or 0)
  end
  bench.done(summary, latency, requests, string.format(',"rotations":%d,"unchanged":%d', rotated, same))
end
