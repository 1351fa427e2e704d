-- A counting semaphore whose permits are leased to their holders.
-- KEYS: meta, value (available permits), holders (zset: permit id -> lease expiry ms),
--       fence (counter), queue (list of "waiter key|owner id"), live (zset: queue entry
--       -> when its liveness runs out; see lib.lua), pending (zset: "permit id|mark|
--       waiter key" -> claim deadline ms, for each permit granted to a waiter; mark: '!'
--       when the permit came from a dead holder, else '0'), died (how many available
--       permits came back from dead holders)
-- A permit id is "owner id#token". A waiter claims a grant by popping its message; a
-- grant nobody popped by its deadline lapses (see lock.lua). A missing value reads as 0
-- (a restart without persistence emptied the server).
local value_key, holders, fence_key, queue = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local live, pending, died_key = KEYS[6], KEYS[7], KEYS[8]
local op = ARGV[1]

local function value()
  return tonumber(redis.call('GET', value_key) or '0')
end

-- Grants past their claim deadline: popped ones were claimed; the others lapse, and
-- their permits come back as they were given.
local function settle(now)
  local due = redis.call('ZRANGEBYSCORE', pending, '-inf', now)
  if #due == 0 then
    return
  end
  for _, record in ipairs(due) do
    local a = string.find(record, '|', 1, true)
    local permit, mark, wkey = string.sub(record, 1, a - 1), string.sub(record, a + 1, a + 1),
      string.sub(record, a + 3)
    if redis.call('EXISTS', wkey) == 1 then
      redis.call('DEL', wkey)
      if redis.call('ZREM', holders, permit) == 1 then
        redis.call('INCR', value_key)
        if mark == '!' then
          redis.call('INCR', died_key)
        end
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
end

-- Permits whose holder stopped renewing them (it died) come back, and are counted as
-- having come from a dead holder.
local function purge(now)
  local n = redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  if n > 0 then
    redis.call('INCRBY', value_key, n)
    redis.call('INCRBY', died_key, n)
  end
end

-- Take one permit for owner; returns its token and '!' if it came from a dead holder.
local function take(owner, lease, now)
  redis.call('DECR', value_key)
  local token = redis.call('INCR', fence_key)
  redis.call('ZADD', holders, now + lease, owner .. '#' .. token)
  if tonumber(redis.call('GET', died_key) or '0') > 0 then
    redis.call('DECR', died_key)
    return token, '!'
  end
  return token, ''
end

-- Give available permits to queued live waiters, oldest first; each grant can lapse
-- after the claim window until its waiter pops it.
local function give(lease, now)
  while value() > 0 do
    local entry = pop_live(queue, live, now)
    if not entry then
      return
    end
    local wkey, owner = split(entry)
    local token, mark = take(owner, tonumber(lease), now)
    local record = owner .. '#' .. token .. '|' .. (mark == '!' and '!' or '0') .. '|' .. wkey
    redis.call('ZADD', pending, now + math.min(tonumber(lease), CLAIM_MS), record)
    grant(wkey, token .. mark, lease)
  end
end

-- Milliseconds until a lease or a claim window could run out (an hour when none).
local function next_expiry(now)
  local soonest = 3600000
  for _, key in ipairs({holders, pending}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #first > 0 then
      soonest = math.min(soonest, math.max(0, tonumber(first[2]) - now))
    end
  end
  return soonest
end

local now = now_ms()
settle(now)
purge(now)
if op == 'acquire' then
  -- ARGV: op, owner id, lease ms, waiter key ('' = do not queue)
  -- Returns {1, token, died} (taken) or {0, ms until a lease or claim could run out,
  -- near the head (1/0)}.
  if redis.call('LLEN', queue) > 0 then
    purge_dead(queue, live, now)
  end
  if value() > 0 and redis.call('LLEN', queue) == 0 then
    local token, mark = take(ARGV[2], tonumber(ARGV[3]), now)
    return {1, token, mark == '!' and 1 or 0}
  end
  local head = 0
  if ARGV[4] ~= '' then
    local entry = ARGV[4] .. '|' .. ARGV[2]
    enqueue(queue, live, entry, now)
    give(ARGV[3], now)
    local message = redis.call('LPOP', ARGV[4])
    if message then  -- the waiters ahead were gone: it is the caller's at once
      redis.call('DEL', ARGV[4])
      local died = string.sub(message, -1) == '!'
      return {1, tonumber((string.gsub(message, '!', ''))), died and 1 or 0}
    end
    head = near_head(queue, entry)
  else
    give(ARGV[3], now)
  end
  return {0, next_expiry(now), head}
elseif op == 'tick' then
  -- ARGV: op, owner id, waiter key, lease ms. See lock.lua.
  -- Returns {ms until a lease or claim could run out, near the head (1/0)}.
  local owner, wkey = ARGV[2], ARGV[3]
  local entry = wkey .. '|' .. owner
  purge_dead(queue, live, now)
  if redis.call('EXISTS', wkey) == 0 then
    renew_entry(queue, live, entry, now)
  end
  give(ARGV[4], now)
  return {next_expiry(now), near_head(queue, entry)}
elseif op == 'release' then
  -- ARGV: op, n, bound ('' = none), lease ms, permit ids the caller gives back...
  -- Returns {-1} (over the bound, nothing changed), {-2, value} (past MAX_VALUE,
  -- nothing changed) or {1, how many of the permits had been lost (their leases ran
  -- out: they came back then, and are not added again)}.
  local n = tonumber(ARGV[2])
  local lost = 0
  for i = 5, #ARGV do
    if not redis.call('ZSCORE', holders, ARGV[i]) then
      lost = lost + 1
    end
  end
  local add = n - lost
  if ARGV[3] ~= '' and value() + add > tonumber(ARGV[3]) then
    return {-1}
  end
  if value() + add > MAX_VALUE then  -- polysync.MAX_VALUE: as posix and thread refuse
    return {-2, value()}
  end
  for i = 5, #ARGV do
    redis.call('ZREM', holders, ARGV[i])
  end
  if add > 0 then
    redis.call('INCRBY', value_key, add)
    give(ARGV[4], now)
  end
  return {1, lost}
elseif op == 'cancel' then
  -- ARGV: op, owner id, waiter key, '1' if the owner id is this acquisition's alone.
  -- Returns {1, message} if the wait had been granted meanwhile (the caller now holds
  -- the permit), else {0}.
  local entry = ARGV[3] .. '|' .. ARGV[2]
  redis.call('LREM', queue, 1, entry)
  redis.call('ZREM', live, entry)
  local message = redis.call('LPOP', ARGV[3])
  if message then
    redis.call('DEL', ARGV[3])
    return {1, message}
  end
  if ARGV[4] == '1' then  -- a permit of this owner: taken or popped, but the reply never came
    local prefix = ARGV[2] .. '#'
    for _, permit in ipairs(redis.call('ZRANGE', holders, 0, -1)) do
      if string.sub(permit, 1, #prefix) == prefix then
        return {1, string.sub(permit, #prefix + 1)}
      end
    end
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
  return value()
elseif op == 'stats' then
  -- {available permits, queued live waiters, permits held, latest fencing token, ms left
  -- of the lease that runs out first (-1: no permit held)}
  purge_dead(queue, live, now)
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  local soonest = -1
  if #first > 0 then
    soonest = math.max(0, tonumber(first[2]) - now)
  end
  return {value(), redis.call('LLEN', queue), redis.call('ZCARD', holders),
          tonumber(redis.call('GET', fence_key) or '0'), soonest}
end
return redis.error_reply('unknown semaphore operation ' .. op)
