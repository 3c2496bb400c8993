-- GET /health/live: the gateway alone (no auth, no rate limit, no service call).
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = bench.setup
done = bench.done

wrk.method = "GET"
wrk.path = "/health/live"
