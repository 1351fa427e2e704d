-- KEYS: meta, state (hash: count, broken), queue (list of waiter keys)
-- Messages to waiters: 'ok' (the barrier tripped) or 'broken'.
local state, queue = KEYS[2], KEYS[3]
local op = ARGV[1]

local function break_it(ttl)
  redis.call('HSET', state, 'broken', '1', 'count', '0')
  wake_all(queue, 'broken', ttl)
end

if op == 'arrive' then
  -- ARGV: op, waiter key, parties. Returns {-1} broken, {2, index} last, {0, index} queued.
  if redis.call('HGET', state, 'broken') == '1' then
    return {-1}
  end
  local index = redis.call('HINCRBY', state, 'count', 1) - 1
  if index + 1 >= tonumber(ARGV[3]) then
    return {2, index}
  end
  redis.call('RPUSH', queue, ARGV[2])
  return {0, index}
elseif op == 'trip' then
  -- ARGV: op, message ttl ms
  redis.call('HSET', state, 'count', '0')
  return wake_all(queue, 'ok', ARGV[2])
elseif op == 'break' then
  break_it(ARGV[2])
  return 1
elseif op == 'reset' then
  wake_all(queue, 'broken', ARGV[2])
  redis.call('HSET', state, 'broken', '0', 'count', '0')
  return 1
elseif op == 'cancel' then
  -- ARGV: op, waiter key, message ttl ms. A timed-out waiter breaks the barrier
  -- (threading semantics) unless a message reached it first.
  local got = cancel(queue, ARGV[2], ARGV[2])
  if got then
    return got
  end
  break_it(ARGV[3])
  return 'timeout'
elseif op == 'leave' then
  -- ARGV: op, waiter key. An interrupted waiter (Ctrl-C) leaves as if it had never
  -- come, as in threading (only a timeout breaks the barrier), unless a message
  -- reached it first: then it takes that message.
  if redis.call('LREM', queue, 1, ARGV[2]) == 1 then
    redis.call('HINCRBY', state, 'count', -1)
    return 'left'
  end
  return redis.call('LPOP', ARGV[2])
elseif op == 'status' then
  return {tonumber(redis.call('HGET', state, 'count') or '0'),
          redis.call('HGET', state, 'broken') == '1' and 1 or 0}
end
return redis.error_reply('unknown barrier operation ' .. op)
