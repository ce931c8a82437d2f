-- Takes a token from a rate limit's bucket (full on first use), refilled for the time since
-- it was last drawn from. KEYS[1]: the bucket. ARGV: now, rate per second, burst.
-- Returns 'taken', else the tokens held (the caller works out the wait).
local now, rate, burst = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(f[1]) or burst
local at = tonumber(f[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * rate)
local taken = tokens >= 1
if taken then
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
-- A bucket unused for a day is forgotten (it would be full again by then).
redis.call('PEXPIRE', KEYS[1], 86400000)
if taken then
  return 'taken'
end
return tostring(tokens)
