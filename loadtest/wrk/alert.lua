-- wrk script: POST one JSON alert per request (see BENCHMARKS.md).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"location":"City %d","type":"Rocket Alert","timestamp":"%s","duration":10}',
    n % 500, os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format(nil, "/api/alerts", nil, body)
end
