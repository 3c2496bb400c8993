-- Shared by every wrk script of `make bench` (scripts/bench.sh):
--   * data(name): the lines of a file the loader wrote to $BENCH_DATA;
--   * setup(thread): numbers the threads, so each starts on different users;
--   * done(...): writes the run's figures as one JSON object to $BENCH_RESULT.
-- Each scenario script loads this with dofile() and sets the globals it needs.
local M = {}

function M.data(name)
  local lines = {}
  for line in io.lines(os.getenv("BENCH_DATA") .. "/" .. name) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  assert(#lines > 0, name .. " is empty")
  return lines
end

M.threads = {}
function M.setup(thread)
  M.threads[#M.threads + 1] = thread
  thread:set("thread_id", #M.threads)
end

-- extra: optional string of further JSON members (',"name":value...') a script adds.
function M.done(summary, latency, requests, extra)
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_RESULT"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f%s}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean, extra or ""))
  out:close()
end

-- Rotating picks: thread t starts at offset t*7 so threads do not walk in step.
function M.cursor()
  local n = (thread_id or 1) * 7
  return function()
    n = n + 1
    return n
  end
end

return M
