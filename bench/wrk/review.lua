-- POST /api/v1/reviews: one SM-2 review (a transaction: SRS row, review log, deck
-- progress, cache invalidation). Requests rotate over users and, per user, over cards.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = bench.setup
done = bench.done

local tokens, cards, next_n
function init(args)
  tokens = bench.data("access.txt")
  cards = bench.data("cards.txt")
  next_n = bench.cursor()
end
function request()
  local n = next_n()
  local user = n % #tokens
  local card = math.floor(n / #tokens) % #cards
  local body = '{"card_id":"' .. cards[card + 1] .. '","quality":' .. (3 + n % 3) .. ',"time_taken":7}'
  return wrk.format("POST", "/api/v1/reviews",
    { Authorization = "Bearer " .. tokens[user + 1], ["Content-Type"] = "application/json" }, body)
end
