-- The aggregation rules, applied atomically in Redis (ARCHITECTURE.md, "Aggregation
-- semantics"). This mirrors alert-core's src/aggregate.rs rule for rule: change one,
-- change the other. The processor's tests run both on the same random sequences.
--
-- ARGV: 1 mode (batch | close), 2 key prefix, 3 now in ms ('' = Redis TIME,
-- so that every processor agrees on the time), 4 epoch candidate, 5 event log MAXLEN,
-- 6 dedupe TTL ms, 7 history length, 8 payload (batch: JSON array of alerts and
-- cancels, each with a `kind`; close: how many windows at most).
--
-- Keys under the prefix: epoch, log (stream: the event log, entry id = offset),
-- live (pub/sub channel: "<offset> <record>"), closing (zset location -> end ms, also
-- the index of open windows), w:<location> (window JSON), h:<location> (history list),
-- seen:id:<uuid> and seen:key:<key> (dedupe), ref:<reference> (windows an alert joined).

local mode, P = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local log_maxlen, ttl, history_len = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])

local epoch = redis.call('GET', P .. 'epoch')
if not epoch then
  redis.call('SET', P .. 'epoch', ARGV[4])
  epoch = ARGV[4]
end

local counts = { open = 0, update = 0, close = 0 }
local close_lags = {}

local function emit(event_type, reason, window, alert_id)
  local record = { eventType = event_type, window = window, createdAt = now, epoch = epoch }
  if reason then record.reason = reason end
  if alert_id then record.alertId = alert_id end
  local body = cjson.encode(record)
  local offset = redis.call('XADD', P .. 'log', 'MAXLEN', '~', log_maxlen, '*', 'e', body)
  redis.call('PUBLISH', P .. 'live', offset .. ' ' .. body)
  counts[event_type] = counts[event_type] + 1
  if event_type == 'close' then table.insert(close_lags, now - window['end']) end
end

local function window_key(location) return P .. 'w:' .. location end

local function load(location)
  local raw = redis.call('GET', window_key(location))
  if raw then return cjson.decode(raw) end
  return nil
end

local function store(window)
  redis.call('SET', window_key(window.location), cjson.encode(window))
  redis.call('ZADD', P .. 'closing', window['end'], window.location)
end

local function drop(window)
  redis.call('DEL', window_key(window.location))
  redis.call('ZREM', P .. 'closing', window.location)
end

local function contains(list, value)
  for _, item in ipairs(list) do
    if item == value then return true end
  end
  return false
end

-- Same UUID or idempotency key within the TTL: the message changes nothing. Each key
-- is remembered as it is checked, stopping at the first one already seen.
local function seen_before(id, key)
  if not redis.call('SET', P .. 'seen:id:' .. id, 1, 'PX', ttl, 'NX') then return true end
  if key and not redis.call('SET', P .. 'seen:key:' .. key, 1, 'PX', ttl, 'NX') then return true end
  return false
end

-- apply_alert: returns the change and the location's window afterwards.
local function apply(alert, location)
  local window = load(location)
  if window and window['end'] <= now then
    emit('close', 'expired', window, nil)
    drop(window)
    window = nil
  end
  if alert['end'] <= now then return 'expired', window end
  if not window then
    window = {
      id = alert.id, location = location, start = alert.start, ['end'] = alert['end'],
      types = { alert.type }, alertCount = 1,
      severity = alert.severity, title = alert.title, instructions = alert.instructions,
    }
    store(window)
    emit('open', nil, window, alert.id)
    return 'opened', window
  end
  local new_type = not contains(window.types, alert.type)
  local grows = alert['end'] > window['end'] or alert.start < window.start or new_type
  window.start = math.min(window.start, alert.start)
  window['end'] = math.max(window['end'], alert['end'])
  if new_type then
    table.insert(window.types, alert.type)
    table.sort(window.types)
  end
  window.alertCount = window.alertCount + 1
  if not grows then
    redis.call('SET', window_key(location), cjson.encode(window))
    return 'merged', window
  end
  -- Only an announced change replaces the texts, so clients always hold the latest.
  if alert.severity then window.severity = alert.severity end
  if alert.title then window.title = alert.title end
  if alert.instructions then window.instructions = alert.instructions end
  store(window)
  emit('update', nil, window, alert.id)
  return 'updated', window
end

-- The reply for one message or closer run, read by store.rs as `ScriptReply`. An empty
-- Lua table encodes as `{}`, so the lags are left out when there are none.
local function reply(status)
  local fields = { status = status, opens = counts.open, updates = counts.update, closes = counts.close }
  if #close_lags > 0 then fields.closeLagsMs = close_lags end
  return fields
end

local function apply_alert_message(alert)
  if seen_before(alert.id, alert.key) then return 'duplicate' end
  for _, location in ipairs(alert.locations) do
    local change, window = apply(alert, location)
    local history = P .. 'h:' .. location
    local length = redis.call('LPUSH', history, cjson.encode({
      alertId = alert.id, type = alert.type, start = alert.start, ['end'] = alert['end'],
      processedAt = now, change = change,
    }))
    if length > history_len then redis.call('LTRIM', history, 0, history_len - 1) end
    if alert.ref and change ~= 'expired' then
      local ref = P .. 'ref:' .. alert.ref
      redis.call('SADD', ref, location .. '\n' .. window.id)
      redis.call('PEXPIRE', ref, ttl)
    end
  end
  return 'applied'
end

local function apply_cancel(cancel)
  if seen_before(cancel.id, cancel.key) then return 'duplicate' end
  local targets = {}
  for _, ref in ipairs(cancel.references) do
    for _, member in ipairs(redis.call('SMEMBERS', P .. 'ref:' .. ref)) do
      local location, id = string.match(member, '^(.*)\n([^\n]*)$')
      table.insert(targets, { location, id })
    end
  end
  if #targets == 0 then
    for _, location in ipairs(cancel.locations) do table.insert(targets, { location, false }) end
  end
  for _, target in ipairs(targets) do
    -- Only the window the cancelled alert joined: a later window stays open.
    local window = load(target[1])
    if window and (not target[2] or window.id == target[2]) then
      local reason = 'cancelled'
      if window['end'] <= now then reason = 'expired' end
      emit('close', reason, window, cancel.id)
      drop(window)
    end
  end
  return 'applied'
end

if mode == 'batch' then
  -- Several queue messages, in order, one reply each: one round trip for many.
  local replies = {}
  for i, message in ipairs(cjson.decode(ARGV[8])) do
    counts = { open = 0, update = 0, close = 0 }
    close_lags = {}
    local status
    if message.kind == 'cancel' then status = apply_cancel(message) else status = apply_alert_message(message) end
    replies[i] = reply(status)
  end
  return cjson.encode(replies)
elseif mode == 'close' then
  local due = redis.call('ZRANGEBYSCORE', P .. 'closing', '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
  for _, location in ipairs(due) do
    local window = load(location)
    if not window then
      redis.call('ZREM', P .. 'closing', location)
    elseif window['end'] <= now then
      emit('close', 'expired', window, nil)
      drop(window)
    else
      redis.call('ZADD', P .. 'closing', window['end'], location)
    end
  end
  local fields = reply('closed')
  local next_due = redis.call('ZRANGE', P .. 'closing', 0, 0, 'WITHSCORES')
  fields.nextDue = tonumber(next_due[2])
  fields.now = now
  return cjson.encode(fields)
end
return redis.error_reply('unknown mode ' .. tostring(mode))
