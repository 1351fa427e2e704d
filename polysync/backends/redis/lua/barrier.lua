-- KEYS: meta, state (hash: broken, holes), queue (list of the waiting parties' waiter
--       keys, in arrival order), live (zset: waiter key -> when its liveness runs out;
--       see lib.lua), parties (hash: waiter key -> "index|who", who = "space:pid:start")
-- Messages to waiters: 'ok' (the barrier tripped), 'broken', or 'again' (the party was
-- taken for dead while it lived: it arrives again).
-- A waiting party that died no longer counts: one whose liveness lapsed (it stopped
-- ticking) is dropped by any call, and the arrival that would trip the barrier first
-- hands the caller the waiting parties of its own process space (same kernel, same PID
-- namespace) to check, and drops those found dead. Each waiting party holds its index,
-- so one freed by a party that left is given again (holes counts the parties that left).
local state, queue, live, parties_key = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]
local now = now_ms()

local function forget(wkey)
  if redis.call('LREM', queue, 1, wkey) == 1 then
    redis.call('HINCRBY', state, 'holes', 1)
  end
  redis.call('ZREM', live, wkey)
  redis.call('HDEL', parties_key, wkey)
end

local function end_generation(msg, ttl)
  local n = wake_all(queue, msg, ttl)
  redis.call('DEL', live, parties_key)
  redis.call('HSET', state, 'holes', '0')
  return n
end

local function break_it(ttl)
  redis.call('HSET', state, 'broken', '1')
  end_generation('broken', ttl)
end

-- Drop the parties whose liveness lapsed; how many.
local function purge_lapsed()
  local dead = redis.call('ZRANGEBYSCORE', live, '-inf', '(' .. now)
  for _, wkey in ipairs(dead) do
    forget(wkey)
  end
  return #dead
end

-- The smallest index no waiting party holds.
local function free_index(count)
  if tonumber(redis.call('HGET', state, 'holes') or '0') == 0 then
    return count
  end
  local used = {}
  for _, v in ipairs(redis.call('HVALS', parties_key)) do
    used[tonumber(string.match(v, '^(%d+)|'))] = true
  end
  for i = 0, count - 1 do
    if not used[i] then
      redis.call('HINCRBY', state, 'holes', -1)
      return i
    end
  end
  redis.call('HSET', state, 'holes', '0')
  return count
end

local function space_of(who)
  return string.match(who, '^(.*):%d+:%d+$')
end

if op == 'arrive' then
  -- ARGV: op, waiter key, parties, who, trip ('1': no action, trip at once), message
  -- ttl ms, checked ('1': the caller checked the parties it was handed), then the
  -- waiter keys of those it found dead.
  -- Returns {-1} broken; {3, {wkey, who, ...}} check these first (nothing changed but
  -- the drops); {2, index, tripped (1/0), dropped} last; {0, index, dropped} queued.
  if redis.call('HGET', state, 'broken') == '1' then
    return {-1}
  end
  local dropped = purge_lapsed()
  for i = 8, #ARGV do
    if redis.call('HEXISTS', parties_key, ARGV[i]) == 1 then
      forget(ARGV[i])
      dropped = dropped + 1
    end
  end
  local count = redis.call('LLEN', queue)
  if count + 1 >= tonumber(ARGV[3]) then
    local space = space_of(ARGV[4])
    if ARGV[7] ~= '1' and space and space ~= '-' then
      local same = {}
      local all = redis.call('HGETALL', parties_key)
      for i = 1, #all, 2 do
        local who = string.match(all[i + 1], '^%d+|(.*)$')
        if space_of(who) == space then
          same[#same + 1] = all[i]
          same[#same + 1] = who
        end
      end
      if #same > 0 then
        return {3, same}
      end
    end
    local index = free_index(count)
    if ARGV[5] == '1' then
      end_generation('ok', ARGV[6])
      return {2, index, 1, dropped}
    end
    return {2, index, 0, dropped}
  end
  local index = free_index(count)
  redis.call('RPUSH', queue, ARGV[2])
  redis.call('ZADD', live, now + LIVE_MS, ARGV[2])
  redis.call('HSET', parties_key, ARGV[2], index .. '|' .. ARGV[4])
  return {0, index, dropped}
elseif op == 'tick' then
  -- ARGV: op, waiter key, message ttl ms. Renews the party's liveness; a party taken
  -- for dead while it lived is sent 'again'.
  local wkey = ARGV[2]
  if redis.call('EXISTS', wkey) == 1 then
    return 1
  end
  if redis.call('ZSCORE', live, wkey) then
    redis.call('ZADD', live, now + LIVE_MS, wkey)
    return 1
  end
  grant(wkey, 'again', ARGV[3])
  return 0
elseif op == 'trip' then
  -- ARGV: op, message ttl ms
  return end_generation('ok', ARGV[2])
elseif op == 'break' then
  break_it(ARGV[2])
  return 1
elseif op == 'reset' then
  end_generation('broken', ARGV[2])
  redis.call('HSET', state, 'broken', '0')
  return 1
elseif op == 'cancel' then
  -- ARGV: op, waiter key, message ttl ms. A timed-out waiter breaks the barrier
  -- (threading semantics) unless a message reached it first.
  local got = cancel(queue, ARGV[2], ARGV[2])
  if got and got ~= 'again' then
    return got
  end
  break_it(ARGV[3])
  return 'timeout'
elseif op == 'leave' then
  -- ARGV: op, waiter key. An interrupted waiter (Ctrl-C) leaves as if it had never
  -- come, as in threading (only a timeout breaks the barrier), unless a message
  -- reached it first: then it takes that message.
  if redis.call('HEXISTS', parties_key, ARGV[2]) == 1 then
    forget(ARGV[2])
    return 'left'
  end
  return redis.call('LPOP', ARGV[2])
elseif op == 'status' then
  purge_lapsed()
  return {redis.call('LLEN', queue), redis.call('HGET', state, 'broken') == '1' and 1 or 0}
end
return redis.error_reply('unknown barrier operation ' .. op)
