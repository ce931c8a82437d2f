-- Records how attempts ended. ARGV: prefix, now, then 7 per attempt: id, attempt, kind
-- ('ok', 'retry', 'fail', 'crash', 'reject', 'release', 'cancel'), data (the result, or
-- the failure as JSON), the failure as text, the failures the caller read, and the wait
-- before a retry (computed by the caller from those failures; both read for 'retry' only).
-- Returns per attempt the task's new state, 'fenced' (not the current attempt), or
-- 'stale' (the failures changed since the caller read them: read again and retry).
local p, now = ARGV[1], clock(ARGV[2])
local out = {}
for i = 3, #ARGV, 7 do
  local id, kind, data, text = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local t = task_key(p, id)
  local f = redis.call('HMGET', t, 'state', 'attempt', 'failures', 'max_retries', 'priority',
    'result_ttl_ms')
  if f[1] ~= 'running' or f[2] ~= ARGV[i + 1] then
    out[#out + 1] = 'fenced'
  elseif kind == 'retry' and f[3] ~= ARGV[i + 5] then
    out[#out + 1] = 'stale'
  else
    unlease(p, id, t)
    if kind == 'ok' then
      out[#out + 1] = finish(p, id, t, 'succeeded', now, f[6], 'result', data)
    elseif kind == 'retry' or kind == 'fail' then
      local failures = tonumber(f[3]) + 1
      local allowed = tonumber(f[4])
      redis.call('HSET', t, 'failures', failures, 'error', data)
      if kind == 'retry' and failures <= allowed then
        local at = now + tonumber(ARGV[i + 6])
        redis.call('HSET', t, 'state', 'queued', 'ready_at', at)
        count(p, 'queued', 1)
        enqueue_at(p, id, f[5], at, now)
        out[#out + 1] = 'queued'
      elseif kind == 'retry' then
        out[#out + 1] = bury(p, id, t, now, data, 'it failed ' .. times(failures) .. ' (' ..
          allowed .. ' retries allowed); the last: ' .. text)
      else
        out[#out + 1] = bury(p, id, t, now, data,
          'it failed, and the failure is not retried: ' .. text)
      end
    elseif kind == 'crash' then
      out[#out + 1] = crash(p, id, t, now, data, text)
    elseif kind == 'reject' then
      redis.call('HSET', t, 'error', data)
      out[#out + 1] = bury(p, id, t, now, data, 'no worker can run it: ' .. text)
    elseif kind == 'release' then
      -- Handed back uncharged; deferred by a rate limit, after the wait given.
      local at = now + tonumber(ARGV[i + 6])
      redis.call('HSET', t, 'state', 'queued', 'ready_at', at)
      count(p, 'queued', 1)
      enqueue_at(p, id, f[5], at, now)
      out[#out + 1] = 'queued'
    else
      out[#out + 1] = finish(p, id, t, 'cancelled', now, f[6], 'error', data, 'reason',
        'cancelled while it ran')
    end
  end
end
return out
