-- KEYS: meta, queue (list of waiter keys), live (zset: waiter key -> when its liveness
--       runs out; see lib.lua), pending (zset: waiter key -> claim deadline ms, for each
--       notification sent and not yet popped)
-- A notification goes to the oldest live waiter, which claims it by popping it. One that
-- nobody popped by its claim deadline (the waiter was killed) is taken back and goes to
-- the next live waiter, if there is one: a notify() to a waiter that died reaches a
-- live one. A waiter whose notification was taken back while it lived (it could not pop
-- it in time) is queued again by its next tick.
local queue, live, pending = KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local now = now_ms()

local function send(wkey, ttl_ms)
  grant(wkey, '1', ttl_ms)
  redis.call('ZADD', pending, now + CLAIM_MS, wkey)
end

local function settle()
  local due = redis.call('ZRANGEBYSCORE', pending, '-inf', now)
  if #due == 0 then
    return
  end
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
  for _, wkey in ipairs(due) do
    if redis.call('EXISTS', wkey) == 1 then
      local next_entry = pop_live(queue, live, now)
      if next_entry then
        redis.call('DEL', wkey)
        send(next_entry, MESSAGE_TTL_MS)
      end
    end
  end
end

settle()
if op == 'enqueue' then
  -- ARGV: op, waiter key
  enqueue(queue, live, ARGV[2], now)
  return 1
elseif op == 'tick' then
  -- ARGV: op, waiter key. Renews the waiter's liveness (or queues it again, see above).
  -- Returns 1 while a notification waits for its claim (watch closely), else 0.
  if redis.call('EXISTS', ARGV[2]) == 0 then
    renew_entry(queue, live, ARGV[2], now)
  end
  return redis.call('ZCARD', pending) > 0 and 1 or 0
elseif op == 'notify' then
  -- ARGV: op, n (-1: all), message ttl ms
  local n = tonumber(ARGV[2])
  local woken = 0
  while n < 0 or woken < n do
    local wkey = pop_live(queue, live, now)
    if not wkey then
      break
    end
    send(wkey, ARGV[3])
    woken = woken + 1
  end
  return woken
elseif op == 'cancel' then
  -- ARGV: op, waiter key
  redis.call('ZREM', live, ARGV[2])
  redis.call('ZREM', pending, ARGV[2])
  return cancel_waiter(queue, ARGV[2])
elseif op == 'stats' then
  purge_dead(queue, live, now)
  return redis.call('LLEN', queue)
end
return redis.error_reply('unknown condition operation ' .. op)
