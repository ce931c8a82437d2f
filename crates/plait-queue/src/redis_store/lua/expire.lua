-- Deletes up to `limit` finished tasks of one queue whose results expired by `now`.
-- ARGV: prefix, now, limit. Returns the ids deleted.
local p, now = ARGV[1], clock(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', p .. 'expiry', '-inf', now, 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  redis.call('ZREM', p .. 'expiry', id)
  local t = task_key(p, id)
  local f = redis.call('HMGET', t, 'state', 'key')
  if f[2] then
    redis.call('HDEL', p .. 'keys', f[2])
  end
  if f[1] then
    count(p, f[1], -1)
  end
  redis.call('DEL', t)
end
return ids
