-- KEYS: meta, queue (list of waiter keys)
local queue = KEYS[2]
local op = ARGV[1]
if op == 'enqueue' then
  -- ARGV: op, waiter key
  redis.call('RPUSH', queue, ARGV[2])
  return 1
elseif op == 'notify' then
  -- ARGV: op, n (-1: all), message ttl ms
  local n = tonumber(ARGV[2])
  local woken = 0
  while n < 0 or woken < n do
    local wkey = redis.call('LPOP', queue)
    if not wkey then
      break
    end
    grant(wkey, '1', ARGV[3])
    woken = woken + 1
  end
  return woken
elseif op == 'cancel' then
  -- ARGV: op, waiter key
  return cancel_waiter(queue, ARGV[2])
elseif op == 'stats' then
  return redis.call('LLEN', queue)
end
return redis.error_reply('unknown condition operation ' .. op)
