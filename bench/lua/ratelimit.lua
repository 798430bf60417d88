-- The strict multi-window check of RATELIMIT.HIT, in Lua, for `make bench`.
-- Same algorithm as the module (core/src/ratelimit.rs): each window of PERIOD ms is
-- a ring of 64 sub-window buckets of g = ceil(PERIOD/64) ms; bucket k counts while
-- now < (k+1)*g + PERIOD - 1; a hit is admitted only if every window admits it, and a
-- denied hit consumes nothing. State: one hash per key, field "<period>:<bucket>" -> cost.
-- KEYS[1] = key; ARGV = limit1 period1 [limit2 period2 ...] cost
-- Reply: {allowed, remaining, retry_after_ms (0 or -1 here), reset_ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[#ARGV])
local n = (#ARGV - 1) / 2
local win = {}
for w = 1, n do
  local period = tonumber(ARGV[2 * w])
  local g = math.ceil(period / 64)
  win[w] = { limit = tonumber(ARGV[2 * w - 1]), period = period, g = g, cur = math.floor(now / g), held = 0 }
end
local data = redis.call('HGETALL', KEYS[1])
local stale = {}
for i = 1, #data, 2 do
  local f = data[i]
  local sep = string.find(f, ':', 1, true)
  local p = tonumber(string.sub(f, 1, sep - 1))
  local k = tonumber(string.sub(f, sep + 1))
  local live = false
  for w = 1, n do
    local x = win[w]
    if x.period == p and now < (k + 1) * x.g + p - 1 then
      x.held = x.held + tonumber(data[i + 1])
      live = true
    end
  end
  if not live then stale[#stale + 1] = f end
end
local remaining, reset = nil, 0
for w = 1, n do
  local x = win[w]
  if x.held + cost > x.limit then return { 0, 0, -1, 0 } end
  local left = x.limit - x.held - cost
  if remaining == nil or left < remaining then remaining = left end
  local r = (x.cur + 1) * x.g + x.period - 1 - now
  if r > reset then reset = r end
end
for w = 1, n do
  redis.call('HINCRBY', KEYS[1], win[w].period .. ':' .. win[w].cur, cost)
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('PEXPIRE', KEYS[1], reset)
return { 1, remaining, 0, reset }
