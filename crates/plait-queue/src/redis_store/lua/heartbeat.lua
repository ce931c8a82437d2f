-- Renews the leases of running attempts. ARGV: prefix, now, lease_ms, then id, attempt per
-- attempt. Returns 'renewed', 'cancel' (renewed, and a cancel was asked) or 'lost' each.
local p, now = ARGV[1], clock(ARGV[2])
local lease_until = now + tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local t = task_key(p, id)
  local f = redis.call('HMGET', t, 'state', 'attempt', 'cancel_requested')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('HSET', t, 'lease_until', lease_until)
    redis.call('ZADD', p .. 'leases', lease_until, id)
    out[#out + 1] = (f[3] == '1') and 'cancel' or 'renewed'
  else
    out[#out + 1] = 'lost'
  end
end
return out
