-- Prepended to every script. A queue's keys share its hash tag (`NS:{QUEUE}:...`), so a
-- script that touches one queue runs on one node of a cluster. `p` is that prefix; task
-- ids are zero-padded to 20 digits, so that equal scores order by id.
--
-- A task is a hash `p..'t:'..id`; a queued task is in exactly one of `ready:PRIO` (score:
-- ready_at) or `delayed` (score: ready_at); a running one in `leases` (score: lease_until);
-- a dead one in `dead` (score: finished_at); a succeeded or cancelled one in `expiry`
-- (score: expires_at). `counts` holds the tasks by state, `keys` the idempotency keys,
-- `events` (a stream) a line per change that waiters block on.

-- Now, in milliseconds: the caller's clock, or the server's.
local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function task_key(p, id)
  return p .. 't:' .. id
end

local function count(p, state, n)
  redis.call('HINCRBY', p .. 'counts', state, n)
end

-- A line for waiters: a result, or work.
local function tell(p, id, state)
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', 10000, '*', 'id', id, 'state', state)
end

local function make_ready(p, id, prio, at)
  redis.call('ZADD', p .. 'ready:' .. prio, at, id)
  redis.call('ZADD', p .. 'prios', prio, prio)
end

local function unready(p, id, prio)
  local set = p .. 'ready:' .. prio
  if redis.call('ZREM', set, id) == 1 and redis.call('ZCARD', set) == 0 then
    redis.call('ZREM', p .. 'prios', prio)
  end
  redis.call('ZREM', p .. 'delayed', id)
end

-- Queued (again): ready at once, or delayed until `at`.
local function enqueue_at(p, id, prio, at, now)
  if at > now then
    redis.call('ZADD', p .. 'delayed', at, id)
  else
    make_ready(p, id, prio, at)
    tell(p, id, 'queued')
  end
end

-- Moves the delayed tasks that are due to their ready sets (a thousand at a time: the
-- ready sets then hold plenty to hand out).
local function promote(p, now)
  local due = redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', p .. 'delayed', id)
    local f = redis.call('HMGET', task_key(p, id), 'priority', 'ready_at')
    if f[1] then
      make_ready(p, id, f[1], tonumber(f[2]))
    end
  end
end

-- Ends a running attempt's lease (the caller sets the task's new state).
local function unlease(p, id, t)
  redis.call('ZREM', p .. 'leases', id)
  redis.call('HDEL', t, 'lease_until')
  count(p, 'running', -1)
end

-- 'once', or 'N times', as a reason says how often.
local function times(n)
  if tonumber(n) == 1 then return 'once' end
  return n .. ' times'
end

local function bury(p, id, t, now, error, reason)
  redis.call('HSET', t, 'state', 'dead', 'finished_at', now, 'error', error, 'reason', reason)
  redis.call('ZADD', p .. 'dead', now, id)
  count(p, 'dead', 1)
  tell(p, id, 'dead')
  return 'dead'
end

-- Succeeded or cancelled: kept until its result expires.
local function finish(p, id, t, state, now)
  local expires = now + tonumber(redis.call('HGET', t, 'result_ttl_ms'))
  redis.call('HSET', t, 'state', state, 'finished_at', now, 'expires_at', expires)
  redis.call('ZADD', p .. 'expiry', expires, id)
  count(p, state, 1)
  tell(p, id, state)
  return state
end

-- Charges an attempt (its lease already ended) to the crash budget: queued again at once,
-- or dead past the budget.
local function crash(p, id, t, now, error, text)
  local f = redis.call('HMGET', t, 'crashes', 'crash_budget', 'priority')
  local crashes = tonumber(f[1]) + 1
  local budget = tonumber(f[2])
  redis.call('HSET', t, 'crashes', crashes, 'error', error)
  if crashes < budget then
    redis.call('HSET', t, 'state', 'queued', 'ready_at', now)
    count(p, 'queued', 1)
    enqueue_at(p, id, f[3], now, now)
    return 'queued'
  end
  return bury(p, id, t, now, error, 'its attempts crashed ' .. times(crashes) ..
    ' (crash budget ' .. budget .. '); the last: ' .. text)
end

-- Reclaims every lease that ran out before `now`, as a crash of its attempt.
local function reclaim(p, now)
  local expired = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', '(' .. now)
  for _, id in ipairs(expired) do
    local t = task_key(p, id)
    local f = redis.call('HMGET', t, 'attempt', 'worker')
    local message = 'worker ' .. (f[2] or '?') .. ' stopped renewing its lease on attempt ' ..
      f[1] .. ' (it died, or hung)'
    unlease(p, id, t)
    crash(p, id, t, now, cjson.encode({ kind = 'lease_expired', message = message }),
      'lease_expired: ' .. message)
  end
  return #expired
end
