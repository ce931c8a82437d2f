-- Prepended to every script. A queue's keys share its hash tag (`NS:{QUEUE}:...`), so a
-- script that touches one queue runs on one node of a cluster. `p` is that prefix; task
-- ids are zero-padded to 20 digits, so that equal scores order by id.
--
-- A task is a hash `p..'t:'..id`; a queued task is in exactly one of `ready:PRIO` (score:
-- ready_at) or `delayed` (score: ready_at); a running one in `leases` (score: lease_until);
-- a dead one in `dead` (score: finished_at); a succeeded or cancelled one in `expiry`
-- (score: expires_at). `counts` holds the tasks by state, `keys` the idempotency keys,
-- `events` (a stream) a line per script that changed tasks, of `id state` pairs, that
-- waiters block on.

-- Now, in milliseconds: the caller's clock, or the server's.
local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A whole number as text. Redis 7.0 writes a Lua number given to a command with "%.17g",
-- several times slower than this; scripts pass text in their hot paths.
local function int(n)
  return string.format('%d', n)
end

local function task_key(p, id)
  return p .. 't:' .. id
end

-- Writes that many tasks of one script share are gathered here and made by `settle`, a
-- command for all of them rather than one each: a script's cost is mostly its calls.
local pending = { counts = {}, zadd = {}, zrem = {}, events = {}, woken = {} }

local function count(p, state, n)
  local key = p .. 'counts'
  local by_state = pending.counts[key]
  if not by_state then
    by_state = {}
    pending.counts[key] = by_state
  end
  by_state[state] = (by_state[state] or 0) + n
end

-- Adds to (or takes from) a sorted set at `settle`.
local function later(kind, set, ...)
  local list = pending[kind][set]
  if not list then
    list = {}
    pending[kind][set] = list
  end
  for i = 1, select('#', ...) do
    list[#list + 1] = select(i, ...)
  end
end

-- A change for waiters: one stream line per queue per script, `id state` pairs. Queued
-- tasks only wake workers, so one pair says it for all of a script's.
local function tell(p, id, state)
  if state == 'queued' then
    if pending.woken[p] then
      return
    end
    pending.woken[p] = true
  end
  later('events', p .. 'events', id, state)
end

-- One command per set for a list of arguments; Lua's unpack takes a few thousand at most.
local function in_chunks(command, key, list, per)
  for i = 1, #list, per do
    redis.call(command, key, unpack(list, i, math.min(i + per - 1, #list)))
  end
end

-- Makes the gathered writes. A script calls it before it reads what they change, and at
-- its end (scripts.rs runs each script's body, then this).
local function settle()
  for set, members in pairs(pending.zrem) do
    in_chunks('ZREM', set, members, 1000)
  end
  for set, pairs_ in pairs(pending.zadd) do
    in_chunks('ZADD', set, pairs_, 2000)
  end
  for key, by_state in pairs(pending.counts) do
    for state, n in pairs(by_state) do
      if n ~= 0 then
        redis.call('HINCRBY', key, state, n)
      end
    end
  end
  for stream, pairs_ in pairs(pending.events) do
    for i = 1, #pairs_, 2000 do
      redis.call('XADD', stream, 'MAXLEN', '~', 2000, '*',
        unpack(pairs_, i, math.min(i + 1999, #pairs_)))
    end
  end
  pending = { counts = {}, zadd = {}, zrem = {}, events = {}, woken = {} }
end

local function make_ready(p, id, prio, at)
  local set = p .. 'ready:' .. prio
  if not pending.zadd[set] then
    later('zadd', p .. 'prios', prio, prio)
  end
  later('zadd', set, at, id)
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
    later('zadd', p .. 'delayed', int(at), id)
  else
    make_ready(p, id, prio, int(at))
    tell(p, id, 'queued')
  end
end

-- Moves the delayed tasks that are due to their ready sets (a thousand at a time: the
-- ready sets then hold plenty to hand out).
local function promote(p, now)
  local due = redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    redis.call('ZREM', p .. 'delayed', unpack(due))
  end
  for _, id in ipairs(due) do
    local f = redis.call('HMGET', task_key(p, id), 'priority', 'ready_at')
    if f[1] then
      make_ready(p, id, f[1], tonumber(f[2]))
    end
  end
end

-- Ends a running attempt's lease (the caller sets the task's new state).
local function unlease(p, id, t)
  later('zrem', p .. 'leases', id)
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
  later('zadd', p .. 'dead', now, id)
  count(p, 'dead', 1)
  tell(p, id, 'dead')
  return 'dead'
end

-- Succeeded or cancelled: kept until its result expires. `ttl`: the task's result_ttl_ms
-- if the caller has read it; `...`: more fields to set.
local function finish(p, id, t, state, now, ttl, ...)
  local expires = int(now + tonumber(ttl or redis.call('HGET', t, 'result_ttl_ms')))
  redis.call('HSET', t, 'state', state, 'finished_at', int(now), 'expires_at', expires, ...)
  later('zadd', p .. 'expiry', expires, id)
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
