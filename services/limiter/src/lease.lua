-- The counted items of one lease call (LeaseService/Lease), as one atomic step.
--
-- The buckets are gcra.lua's: the same keys and the same stored state ("level at": hits
-- not yet drained, and when that was measured on Redis's clock, in microseconds), so a
-- hit granted here is a hit ShouldRateLimit sees, and the other way round. Items are
-- taken in order, each against the level the items before it left, so a key repeated in
-- one call sees the earlier grant. Unlike gcra.lua's descriptors, items are independent:
-- each is its own grant, and a refused item leaves the others as they are.
--
-- An exactly decided item is gcra.lua with hits = spend (a spend of 0 only reads the
-- bucket). A leased item needs max(spend, 1) hits to fit in floor(limit - level) (the
-- hits available), or it is refused; when they fit it is granted
-- max(spend, min(lease_size - held, max(1, floor(available / 2)))), so grants halve as
-- the bucket runs out and never exceed what it has. Granted hits fill the bucket.
--
-- KEYS[i]       bucket of the i-th item
-- ARGV[6i - 5]  limit of the bucket (hits per period)
-- ARGV[6i - 4]  period of the bucket, in microseconds
-- ARGV[6i - 3]  0: decided exactly; 1: exactly, in shadow mode (never refuses); 2: leased
-- ARGV[6i - 2]  spend: hits needed now (0 or 1)
-- ARGV[6i - 1]  held: hits the caller still holds (leased items)
-- ARGV[6i]      lease size: the most hits the caller may hold (leased items)
--
-- Returns five integers per item: 1 when the hits needed fit, else 0; hits granted;
-- hits still fitting in the bucket; microseconds until the bucket is empty;
-- microseconds until the hits needed would fit (0 when they fit).

if redis.replicate_commands then
  redis.replicate_commands()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Levels as this call left them, by key.
local levels = {}

local function level_of(key, limit, period)
  local level = levels[key]
  if level then
    return level
  end
  level = 0
  local stored = redis.call('GET', key)
  if stored then
    local space = string.find(stored, ' ', 1, true)
    if space then
      local was = tonumber(string.sub(stored, 1, space - 1))
      local at = tonumber(string.sub(stored, space + 1))
      if was and at then
        level = math.max(0, was - math.max(0, now - at) * limit / period)
      end
    end
  end
  return level
end

local out = {}
for i, key in ipairs(KEYS) do
  local base = 6 * (i - 1)
  local limit = tonumber(ARGV[base + 1])
  local period = tonumber(ARGV[base + 2])
  local kind = ARGV[base + 3]
  local spend = tonumber(ARGV[base + 4])
  local held = tonumber(ARGV[base + 5])
  local lease_size = tonumber(ARGV[base + 6])
  local per_hit = period / limit
  local level = level_of(key, limit, period)

  local need, fits, granted
  if kind == '2' then
    need = math.max(spend, 1)
    local available = math.floor(limit - level)
    fits = available >= need
    granted = 0
    if fits then
      local top_up = math.max(0, lease_size - held)
      local share = math.max(1, math.floor(available / 2))
      granted = math.max(spend, math.min(top_up, share))
    end
  else
    need = spend
    fits = level + need <= limit
    if fits or kind == '1' then
      granted = spend
    else
      granted = 0
    end
  end

  -- A shadow-mode item over its limit is granted but, as in gcra.lua, not counted.
  if fits and granted > 0 then
    level = level + granted
    local ttl_ms = math.max(1, math.ceil(level * per_hit / 1000))
    redis.call('SET', key, string.format('%.17g %.17g', level, now), 'PX', ttl_ms)
  end
  levels[key] = level

  local wait = 0
  if not fits then
    wait = math.ceil((level + need - limit) * per_hit)
  end
  out[#out + 1] = fits and 1 or 0
  out[#out + 1] = granted
  out[#out + 1] = math.max(0, math.floor(limit - level))
  out[#out + 1] = math.ceil(level * per_hit)
  out[#out + 1] = wait
end
return out
