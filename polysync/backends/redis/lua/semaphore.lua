-- A counting semaphore whose permits are leased to their holders.
-- KEYS: meta, value (available permits), holders (zset: permit id -> lease expiry ms),
--       fence (counter), queue (list of "waiter key|owner id")
local value_key, holders, fence_key, queue = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]

-- Permits whose holder stopped renewing them (it died) come back.
local function purge(now)
  local n = redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  if n > 0 then
    redis.call('INCRBY', value_key, n)
  end
end

local function take(owner, lease, now)
  redis.call('DECR', value_key)
  local token = redis.call('INCR', fence_key)
  redis.call('ZADD', holders, now + lease, owner .. '#' .. token)
  return token
end

-- Give available permits to queued waiters, oldest first.
local function give(lease, now)
  while tonumber(redis.call('GET', value_key)) > 0 do
    local entry = redis.call('LPOP', queue)
    if not entry then
      return
    end
    local wkey, owner = split(entry)
    -- Leased for the claim window until the new holder confirms it (see lock.lua).
    grant(wkey, take(owner, math.min(tonumber(lease), CLAIM_MS), now), lease)
  end
end

-- Milliseconds until the first lease could run out (an hour when nobody holds a permit).
local function next_expiry(now)
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return 3600000
  end
  return math.max(0, tonumber(first[2]) - now)
end

local now = now_ms()
purge(now)
if op == 'acquire' then
  -- ARGV: op, owner id, lease ms, waiter key ('' = do not queue)
  if tonumber(redis.call('GET', value_key)) > 0 and redis.call('LLEN', queue) == 0 then
    return {1, take(ARGV[2], tonumber(ARGV[3]), now)}
  end
  if ARGV[4] ~= '' then
    redis.call('RPUSH', queue, ARGV[4] .. '|' .. ARGV[2])
  end
  give(ARGV[3], now)
  return {0, next_expiry(now)}
elseif op == 'release' then
  -- ARGV: op, n, bound ('' = none), lease ms, permit ids the caller gives back...
  local n = tonumber(ARGV[2])
  if ARGV[3] ~= '' and tonumber(redis.call('GET', value_key)) + n > tonumber(ARGV[3]) then
    return -1
  end
  for i = 5, #ARGV do
    redis.call('ZREM', holders, ARGV[i])
  end
  redis.call('INCRBY', value_key, n)
  give(ARGV[4], now)
  return 1
elseif op == 'poke' then
  -- ARGV: op, lease ms. A waiter checks on holders whose leases may have run out.
  give(ARGV[2], now)
  return next_expiry(now)
elseif op == 'cancel' then
  -- ARGV: op, owner id, waiter key
  local got = cancel(queue, ARGV[3] .. '|' .. ARGV[2], ARGV[3])
  if got then
    return {1, tonumber(got)}
  end
  return {0}
elseif op == 'renew' then
  -- ARGV: op, lease ms, permit ids... Returns how many were still held.
  local held = 0
  for i = 3, #ARGV do
    held = held + redis.call('ZADD', holders, 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[i])
  end
  return held
elseif op == 'forget' then
  -- ARGV: op, permit ids... A closing handle keeps what it took (as a signal consumer
  -- does) instead of letting the permits come back when their leases run out.
  for i = 2, #ARGV do
    redis.call('ZREM', holders, ARGV[i])
  end
  return 1
elseif op == 'value' then
  return tonumber(redis.call('GET', value_key))
elseif op == 'stats' then
  -- {available permits, queued waiters, permits held}
  return {tonumber(redis.call('GET', value_key)), redis.call('LLEN', queue),
          redis.call('ZCARD', holders)}
end
return redis.error_reply('unknown semaphore operation ' .. op)
