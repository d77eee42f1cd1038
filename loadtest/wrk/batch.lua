-- wrk script: POST a batch of BATCH (default 100) JSON alerts per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local size = tonumber(os.getenv("BATCH") or "100")
request = function()
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local items = {}
  for i = 1, size do
    items[i] = string.format('{"location":"City %d","type":"Rocket Alert","timestamp":"%s","duration":10}', i, now)
  end
  return wrk.format(nil, "/api/alerts", nil, "[" .. table.concat(items, ",") .. "]")
end
