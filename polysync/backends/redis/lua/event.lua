-- KEYS: meta, flag, queue (list of waiter keys)
local flag, queue = KEYS[2], KEYS[3]
local op = ARGV[1]
if op == 'set' then
  -- ARGV: op, message ttl ms
  redis.call('SET', flag, '1')
  return wake_all(queue, '1', ARGV[2])
elseif op == 'clear' then
  redis.call('DEL', flag)
  return 1
elseif op == 'is_set' then
  return redis.call('EXISTS', flag)
elseif op == 'wait' then
  -- ARGV: op, waiter key, push ('1': the caller pipelined a BLPOP on its waiter key),
  -- message ttl ms
  if redis.call('EXISTS', flag) == 1 then
    if ARGV[3] == '1' then
      grant(ARGV[2], '1', ARGV[4])
    end
    return 1
  end
  redis.call('RPUSH', queue, ARGV[2])
  return 0
elseif op == 'cancel' then
  -- ARGV: op, waiter key
  return cancel_waiter(queue, ARGV[2])
elseif op == 'stats' then
  return {redis.call('EXISTS', flag), redis.call('LLEN', queue)}
end
return redis.error_reply('unknown event operation ' .. op)
