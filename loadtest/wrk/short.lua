-- wrk script: batches of 100 alerts lasting 1-5 s over 500 locations, to exercise
-- opens, updates and closes (close lag) rather than merges.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local items = {}
  for i = 1, 100 do
    n = n + 1
    items[i] = string.format(
      '{"location":"Town %d","type":"Rocket Alert","timestamp":"%s","durationSeconds":%d}',
      n % 500, now, 2 + n % 4)
  end
  return wrk.format(nil, "/api/alerts", nil, "[" .. table.concat(items, ",") .. "]")
end
