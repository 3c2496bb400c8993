-- GET /api/v1/decks/{id}: a cache hit in deck-service (the loader warmed every deck);
-- requests rotate over the users' tokens and the decks.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = bench.setup
done = bench.done

local tokens, decks, next_n
function init(args)
  tokens = bench.data("access.txt")
  decks = bench.data("decks.txt")
  next_n = bench.cursor()
end
function request()
  local n = next_n()
  return wrk.format("GET", "/api/v1/decks/" .. decks[n % #decks + 1],
    { Authorization = "Bearer " .. tokens[n % #tokens + 1] })
end
