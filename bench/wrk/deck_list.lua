-- GET /api/v1/decks: the first page of active decks.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = bench.setup
done = bench.done

local tokens, next_n
function init(args)
  tokens = bench.data("access.txt")
  next_n = bench.cursor()
end
function request()
  return wrk.format("GET", "/api/v1/decks", { Authorization = "Bearer " .. tokens[next_n() % #tokens + 1] })
end
