-- Account lockout: one subject's consecutive failures and its lock, read and changed as
-- one atomic step, so concurrent failures are each counted exactly once.
--
-- The state is a hash: `failures` (consecutive failures counted), `locked_until` and
-- `last_failure` (milliseconds since the Unix epoch, on the caller's clock, passed in as
-- `now` so that every operation of one call sees one instant). A state whose last
-- failure is `retention` or more in the past counts as empty, as it would once Redis has
-- expired it.
--
-- A failure while locked is refused and not counted: it neither extends the lock nor
-- doubles the next one. Any other failure is counted; once the count reaches
-- `threshold` it locks for base * 2^(failures - threshold) ms, at most `max`.
--
-- KEYS[1]  the subject's lockout key
-- ARGV[1]  operation: 1 check, 2 record a failure, 3 record a success
-- ARGV[2]  now, in milliseconds since the Unix epoch
-- ARGV[3]  threshold: the failure that locks first
-- ARGV[4]  base back-off, in milliseconds
-- ARGV[5]  longest back-off, in milliseconds
-- ARGV[6]  retention after the last failure, in milliseconds (at least the longest
--          back-off, so a lock never expires early)
--
-- Returns three integers: state (0 open, 1 locked and this call refused, 2 locked by
-- this very failure); consecutive failures counted; milliseconds until the lock ends
-- (0 when open).

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])

if op == '3' then
  redis.call('DEL', key)
  return {0, 0, 0}
end

local threshold = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local retention = tonumber(ARGV[6])

local stored = redis.call('HMGET', key, 'failures', 'locked_until', 'last_failure')
local failures = tonumber(stored[1]) or 0
local locked_until = tonumber(stored[2]) or 0
local last_failure = tonumber(stored[3]) or 0
if now - last_failure >= retention then
  failures = 0
  locked_until = 0
end

if locked_until > now then
  return {1, failures, locked_until - now}
end
if op == '1' then
  return {0, failures, 0}
end

failures = failures + 1
local state, back_off = 0, 0
if failures >= threshold then
  -- 2^40 ms is decades: past it the doubling only matters as "more than max".
  local doublings = math.min(failures - threshold, 40)
  back_off = math.min(base * 2 ^ doublings, max)
  locked_until = now + back_off
  state = 2
end
redis.call('HSET', key,
  'failures', string.format('%.0f', failures),
  'locked_until', string.format('%.0f', locked_until),
  'last_failure', string.format('%.0f', now))
redis.call('PEXPIRE', key, string.format('%.0f', retention))
return {state, failures, back_off}
