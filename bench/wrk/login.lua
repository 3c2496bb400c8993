-- POST /api/v1/auth/login: argon2id verification of a user's password, rotating over users.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = bench.setup
done = bench.done

local bodies, next_n
function init(args)
  bodies = bench.data("login.txt")
  next_n = bench.cursor()
end
function request()
  return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" },
    bodies[next_n() % #bodies + 1])
end
