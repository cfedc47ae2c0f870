-- GCRA over every limited descriptor of one request, as one atomic step.
--
-- A bucket's state is its level (requests not yet drained) and when it was measured.
-- That is GCRA's theoretical arrival time in another form (TAT = at + level * T, with
-- T = period / limit), kept in request units so that a burst of exactly `limit`
-- requests adds up exactly in floating point. A request fits when
-- level + hits <= limit. The clock is Redis's own (TIME), so every instance agrees.
--
-- A request is counted only when every enforced (non-shadow) bucket admits it: a
-- refused request drains nothing, so a client hammering a limit still gets exactly
-- the configured rate. Keys expire when their bucket would be empty again.
--
-- KEYS[i]       bucket of the i-th limited descriptor
-- ARGV[1]       hits (requests this call counts)
-- ARGV[3i - 1]  limit of bucket i (requests per period)
-- ARGV[3i]      period of bucket i, in microseconds
-- ARGV[3i + 1]  1 when bucket i is in shadow mode (never refuses), else 0
--
-- Returns four integers per bucket: admitted (1 or 0); requests remaining; microseconds
-- until the bucket is empty (the full quota back); microseconds until this request
-- would fit (0 when it fits).

if redis.replicate_commands then
  redis.replicate_commands()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local hits = tonumber(ARGV[1])

local levels, fits = {}, {}
local refused = false
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 1])
  local period = tonumber(ARGV[3 * i])
  local level = 0
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
  levels[i] = level
  fits[i] = level + hits <= limit
  if not fits[i] and ARGV[3 * i + 1] ~= '1' then
    refused = true
  end
end

local out = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 1])
  local per_request = tonumber(ARGV[3 * i]) / limit
  local level = levels[i]
  local wait = 0
  if fits[i] then
    if not refused then
      level = level + hits
      local ttl_ms = math.max(1, math.ceil(level * per_request / 1000))
      redis.call('SET', key, string.format('%.17g %.17g', level, now), 'PX', ttl_ms)
    end
  else
    wait = math.ceil((level + hits - limit) * per_request)
  end
  out[#out + 1] = fits[i] and 1 or 0
  out[#out + 1] = math.max(0, math.floor(limit - level))
  out[#out + 1] = math.ceil(level * per_request)
  out[#out + 1] = wait
end
return out
