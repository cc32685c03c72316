-- wrk script: POST /auth/token, each request with a distinct code.
--
-- The codes come from the file named by $CODES, one per line; with $WRK_THREADS
-- threads, thread k sends lines k, k+n, k+2n, ... When $STOP_WHEN_DONE is set, each
-- thread stops once it has sent its codes (the memory phase); otherwise it sends a
-- code that was never minted (the server answers 400, counted as non-2xx).
-- `done` prints one line for the harness:
--   RESULT <requests> <duration_us> <non_2xx> <socket_errors> <p50_us> <p99_us>

local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local threads = tonumber(os.getenv("WRK_THREADS") or "1")
  codes, sent, i = {}, 0, 0
  for line in io.lines(os.getenv("CODES")) do
    if i % threads == id then codes[#codes + 1] = line end
    i = i + 1
  end
  stop_when_done = os.getenv("STOP_WHEN_DONE") ~= nil
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  sent = sent + 1
  local code = codes[sent]
  if code == nil then
    if stop_when_done then wrk.thread:stop() end
    code = "code_never_minted"
  end
  return wrk.format(nil, "/auth/token", nil,
    '{"client_id":"chart-sandbox-client","client_secret":"chart-sandbox-secret","code":"'
      .. code .. '"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
