-- wrk script: POST /connect, the Connect form submitted with its defaults and a
-- `metadata` object of $METADATA_BYTES bytes (as a page anyone can load may send).
-- Each thread stops after $PER_THREAD submissions. `done` prints one line:
--   RESULT <requests> <non_2xx> <socket_errors>
function init(args)
  local n = tonumber(os.getenv("METADATA_BYTES") or "256")
  local metadata = '{"k":"' .. string.rep("v", n - 8) .. '"}'
  local encoded = (metadata:gsub("[^%w%-_%.~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
  body = "client_id=chart-sandbox-client"
    .. "&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fapi%2Fchart%2Fcallback"
    .. "&state=s&provider_id=chart-sandbox&outcome=success&metadata=" .. encoded
  limit = tonumber(os.getenv("PER_THREAD") or "1000")
  sent = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  sent = sent + 1
  if sent > limit then wrk.thread:stop() end
  return wrk.format(nil, "/connect", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
