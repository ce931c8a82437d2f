-- Hands up to `max` ready tasks of one queue to a worker: higher priority first, then
-- older (by ready_at, then id). Leases that ran out are reclaimed first, and delayed tasks
-- that are due made ready.
-- ARGV: prefix, now, worker, max, lease_ms.
-- Returns lease_until, and per task: id, attempt, payload, time_limit_ms ('' for none),
-- failures, crashes.
local p, now, worker, max = ARGV[1], clock(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local lease_until = int(now + tonumber(ARGV[5]))
local now_s = int(now)
reclaim(p, now)
promote(p, now)
settle()
local tasks = {}
for _, prio in ipairs(redis.call('ZREVRANGE', p .. 'prios', 0, -1)) do
  if #tasks >= max then
    break
  end
  local set = p .. 'ready:' .. prio
  local ids = redis.call('ZRANGE', set, 0, max - #tasks - 1)
  if #ids > 0 then
    redis.call('ZREMRANGEBYRANK', set, 0, #ids - 1)
  end
  for _, id in ipairs(ids) do
    local t = task_key(p, id)
    local f = redis.call('HMGET', t, 'attempt', 'payload', 'time_limit_ms', 'failures',
      'crashes')
    local attempt = tonumber(f[1]) + 1
    redis.call('HSET', t, 'attempt', int(attempt), 'state', 'running', 'worker', worker,
      'lease_until', lease_until, 'started_at', now_s, 'cancel_requested', '0')
    later('zadd', p .. 'leases', lease_until, id)
    tasks[#tasks + 1] = { id, attempt, f[2], f[3] or '', f[4], f[5] }
  end
  if redis.call('ZCARD', set) == 0 then
    redis.call('ZREM', p .. 'prios', prio)
  end
end
if #tasks > 0 then
  count(p, 'queued', -#tasks)
  count(p, 'running', #tasks)
end
return { lease_until, tasks }
