-- Cancels a task: at once if it waits, at its worker's next heartbeat if it runs.
-- ARGV: prefix, now, id, the failure (JSON) a waiting task is cancelled with.
-- Returns 'now' (cancelled), 'requested', 'missing', or 'finished:' and the state it had
-- already finished in.
local p, now, id = ARGV[1], clock(ARGV[2]), ARGV[3]
local t = task_key(p, id)
local f = redis.call('HMGET', t, 'state', 'priority')
if not f[1] then
  return 'missing'
elseif f[1] == 'queued' then
  unready(p, id, f[2])
  count(p, 'queued', -1)
  finish(p, id, t, 'cancelled', now, nil, 'error', ARGV[4], 'reason', 'cancelled before it ran')
  return 'now'
elseif f[1] == 'running' then
  redis.call('HSET', t, 'cancel_requested', 1)
  return 'requested'
end
return 'finished:' .. f[1]
