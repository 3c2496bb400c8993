-- GET /api/v1/cards?deck_id=: the 50 cards of a deck (one page), rotating over decks.
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
  return wrk.format("GET", "/api/v1/cards?deck_id=" .. decks[n % #decks + 1],
    { Authorization = "Bearer " .. tokens[n % #tokens + 1] })
end
