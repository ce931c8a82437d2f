-- Puts dead tasks of one queue back, with fresh budgets. ARGV: prefix, now, then the ids
-- (none: every dead task of the queue). Returns how many.
local p, now = ARGV[1], clock(ARGV[2])
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
else
  ids = redis.call('ZRANGE', p .. 'dead', 0, -1)
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', p .. 'dead', id) == 1 then
    local t = task_key(p, id)
    redis.call('HSET', t, 'state', 'queued', 'failures', 0, 'crashes', 0, 'ready_at', now)
    redis.call('HDEL', t, 'finished_at', 'expires_at', 'reason')
    enqueue_at(p, id, redis.call('HGET', t, 'priority'), now, now)
    n = n + 1
  end
end
if n > 0 then
  count(p, 'dead', -n)
  count(p, 'queued', n)
end
return n
