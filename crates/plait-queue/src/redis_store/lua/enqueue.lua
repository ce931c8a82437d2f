-- Enqueues tasks, all or none (every queue's keys are declared, and a script is atomic).
-- ARGV: now, then 13 per task: prefix, id, key, priority, start ('now', 'at' or 'after'),
-- start value, payload, max_retries, backoff_ms, max_backoff_ms, crash_budget,
-- time_limit_ms ('' for none), result_ttl_ms.
-- Returns id, created (1 or 0) per task: a held key returns its first task.
local now = clock(ARGV[1])
local now_s = int(now)
-- Nothing is written unless every id is new: should the id counter ever go back (a
-- failover that lost its last increment), no stored task is overwritten.
local keys = {}
for i = 2, #ARGV, 13 do
  keys[#keys + 1] = task_key(ARGV[i], ARGV[i + 1])
end
for i = 1, #keys, 1000 do
  if redis.call('EXISTS', unpack(keys, i, math.min(i + 999, #keys))) > 0 then
    local taken = '?'
    for j = 2, #ARGV, 13 do
      if redis.call('EXISTS', task_key(ARGV[j], ARGV[j + 1])) == 1 then
        taken = ARGV[j + 1]
        break
      end
    end
    return redis.error_reply('task id ' .. taken .. ' is taken already: the id counter ' ..
      'went back (a failover that lost writes?); nothing was enqueued')
  end
end
local out = {}
for i = 2, #ARGV, 13 do
  local p, id, key, prio = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local existing = false
  if key ~= '' then
    existing = redis.call('HGET', p .. 'keys', key)
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local at = now
    if ARGV[i + 4] == 'at' then
      at = tonumber(ARGV[i + 5])
    elseif ARGV[i + 4] == 'after' then
      at = now + tonumber(ARGV[i + 5])
    end
    local fields = { 'queue', string.match(p, '{(.*)}'), 'state', 'queued',
      'priority', prio, 'ready_at', int(at), 'payload', ARGV[i + 6], 'attempt', '0',
      'failures', '0', 'crashes', '0', 'max_retries', ARGV[i + 7], 'backoff_ms', ARGV[i + 8],
      'max_backoff_ms', ARGV[i + 9], 'crash_budget', ARGV[i + 10],
      'result_ttl_ms', ARGV[i + 12], 'enqueued_at', now_s, 'cancel_requested', '0' }
    if ARGV[i + 11] ~= '' then
      fields[#fields + 1] = 'time_limit_ms'
      fields[#fields + 1] = ARGV[i + 11]
    end
    if key ~= '' then
      -- Held at once: a later task of this batch with the same key is its duplicate.
      redis.call('HSET', p .. 'keys', key, id)
      fields[#fields + 1] = 'key'
      fields[#fields + 1] = key
    end
    redis.call('HSET', task_key(p, id), unpack(fields))
    count(p, 'queued', 1)
    enqueue_at(p, id, prio, at, now)
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
return out
