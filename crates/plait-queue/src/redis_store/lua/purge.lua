-- Deletes up to `limit` waiting tasks of one queue (the caller repeats until none is
-- left). ARGV: prefix, limit. Returns the ids deleted.
local p, limit = ARGV[1], tonumber(ARGV[2])
local ids = {}
local function take(set)
  for _, id in ipairs(redis.call('ZRANGE', set, 0, limit - #ids - 1)) do
    redis.call('ZREM', set, id)
    ids[#ids + 1] = id
  end
end
for _, prio in ipairs(redis.call('ZRANGE', p .. 'prios', 0, -1)) do
  if #ids >= limit then
    break
  end
  local set = p .. 'ready:' .. prio
  take(set)
  if redis.call('ZCARD', set) == 0 then
    redis.call('ZREM', p .. 'prios', prio)
  end
end
if #ids < limit then
  take(p .. 'delayed')
end
for _, id in ipairs(ids) do
  local t = task_key(p, id)
  local key = redis.call('HGET', t, 'key')
  if key then
    redis.call('HDEL', p .. 'keys', key)
  end
  redis.call('DEL', t)
end
if #ids > 0 then
  count(p, 'queued', -#ids)
end
return ids
