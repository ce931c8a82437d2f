-- Hands up to `max` ready tasks of one queue to a worker: higher priority first, then
-- older (by ready_at, then id). Leases that ran out are reclaimed first, and delayed tasks
-- that are due made ready.
-- ARGV: prefix, now, worker, max, lease_ms.
-- Returns lease_until, and per task: id, attempt, payload, time_limit_ms ('' for none),
-- failures, crashes.
local p, now, worker, max = ARGV[1], clock(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local lease_until = now + tonumber(ARGV[5])
reclaim(p, now)
promote(p, now)
local tasks = {}
local n = 0
for _, prio in ipairs(redis.call('ZREVRANGE', p .. 'prios', 0, -1)) do
  if n >= max then
    break
  end
  local set = p .. 'ready:' .. prio
  for _, id in ipairs(redis.call('ZRANGE', set, 0, max - n - 1)) do
    redis.call('ZREM', set, id)
    local t = task_key(p, id)
    local attempt = redis.call('HINCRBY', t, 'attempt', 1)
    redis.call('HSET', t, 'state', 'running', 'worker', worker, 'lease_until', lease_until,
      'started_at', now, 'cancel_requested', 0)
    redis.call('ZADD', p .. 'leases', lease_until, id)
    local f = redis.call('HMGET', t, 'payload', 'time_limit_ms', 'failures', 'crashes')
    tasks[#tasks + 1] = { id, attempt, f[1], f[2] or '', f[3], f[4] }
    n = n + 1
  end
  if redis.call('ZCARD', set) == 0 then
    redis.call('ZREM', p .. 'prios', prio)
  end
end
if n > 0 then
  count(p, 'queued', -n)
  count(p, 'running', n)
end
return { lease_until, tasks }
