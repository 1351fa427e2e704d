-- A leased, fenced, FIFO lock.
-- KEYS: meta, owner (string: owner id, with the lease as its TTL), fence (counter),
--       queue (list of "waiter key|owner id"), held (no TTL, see below), live (zset:
--       queue entry -> when its liveness runs out; see lib.lua)
-- held: '1' while a holder has the lock; mark .. deadline ms .. '|' .. waiter key while
-- a grant waits to be claimed (mark: '!' if the holder before it died, else '0'); '!'
-- or '0' once such a grant lapsed unclaimed. Held without an owner: the lease ran out.
-- A waiter claims a grant by popping its message: a grant is revoked (its message
-- deleted) only while nobody has popped it, so a message popped is always a grant.
-- ARGV[1]: the operation; the rest depends on it.
local owner_key, fence_key, queue, held, live = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local op = ARGV[1]

-- The deadline and waiter key of a grant waiting to be claimed (held's value h), or nil.
local function pending(h)
  if not h or #h < 2 then
    return nil
  end
  local sep = string.find(h, '|', 1, true)
  return tonumber(string.sub(h, 2, sep - 1)), string.sub(h, sep + 1)
end

-- Settle a grant waiting to be claimed: claimed once its message is popped; past its
-- deadline with the message still there, it lapses (its waiter is gone) and the lock is
-- free again, with what the grant carried.
local function settle(now)
  local h = redis.call('GET', held)
  local deadline, wkey = pending(h)
  if not deadline then
    return
  end
  if redis.call('EXISTS', wkey) == 0 then
    redis.call('SET', held, '1')
  elseif deadline <= now then
    redis.call('DEL', wkey, owner_key)
    redis.call('SET', held, string.sub(h, 1, 1))
  end
end

-- Whether the lock is free because its last holder died (its lease ran out) rather than
-- released it; a grant that lapsed unclaimed passes on what it was given.
local function holder_died()
  if redis.call('EXISTS', owner_key) == 1 then
    return false
  end
  local h = redis.call('GET', held)
  local deadline, wkey = pending(h)
  if deadline then  -- the lease ran out before the grant was settled
    return redis.call('EXISTS', wkey) == 0 or string.sub(h, 1, 1) == '!'
  end
  return h == '1' or h == '!'
end

-- Hand the lock straight to the oldest live waiter, so it is never free while anyone
-- waits (no barging) and the waiter wakes already holding it. The message is the fencing
-- token, with '!' appended when the previous holder died. Until the waiter pops it, the
-- grant can lapse (after the claim window): a waiter that is gone holds up the next one
-- for that long, not a whole lease. Call with the owner key absent.
local function grant_next(lease, now)
  local mark = holder_died() and '!' or '0'
  local _, stale = pending(redis.call('GET', held))
  if stale then
    redis.call('DEL', stale)
  end
  local entry = pop_live(queue, live, now)
  if not entry then
    if mark == '!' then
      redis.call('SET', held, '!')  -- for whoever takes it next
    else
      redis.call('DEL', held)
    end
    return false
  end
  local wkey, owner = split(entry)
  local token = redis.call('INCR', fence_key)
  redis.call('SET', owner_key, owner, 'PX', lease)
  local deadline = now + math.min(tonumber(lease), CLAIM_MS)
  redis.call('SET', held, mark .. deadline .. '|' .. wkey)
  grant(wkey, token .. (mark == '!' and '!' or ''), lease)
  return true
end

-- Milliseconds until the owner's claim window or lease could run out.
local function left(now)
  local deadline = pending(redis.call('GET', held))
  if deadline then
    return math.max(0, deadline - now)
  end
  return redis.call('PTTL', owner_key)
end

if op == 'acquire' then
  -- ARGV: op, owner id, lease ms, waiter key ('' = do not queue), push ('1': the caller
  -- pipelined a BLPOP on its waiter key, so an immediate grant is sent there too)
  -- Returns {1, token, died} (taken) or {0, ms the owner has left, near the head (1/0)}.
  local now = false
  local free = redis.call('EXISTS', owner_key) == 0
  if not free then
    now = now_ms()
    settle(now)
    free = redis.call('EXISTS', owner_key) == 0
  end
  if free and redis.call('LLEN', queue) > 0 then
    now = now or now_ms()
    grant_next(ARGV[3], now)  -- the holder's lease ran out: the queue goes first
    free = redis.call('EXISTS', owner_key) == 0
  end
  if free then  -- nobody alive was waiting
    local died = holder_died() and 1 or 0
    local token = redis.call('INCR', fence_key)
    redis.call('SET', owner_key, ARGV[2], 'PX', ARGV[3])
    redis.call('SET', held, '1')
    if ARGV[5] == '1' then
      grant(ARGV[4], token .. (died == 1 and '!' or ''), ARGV[3])
    end
    return {1, token, died}
  end
  local head = 0
  now = now or now_ms()
  if ARGV[4] ~= '' then
    local entry = ARGV[4] .. '|' .. ARGV[2]
    enqueue(queue, live, entry, now)
    head = near_head(queue, entry)
  end
  return {0, left(now), head}
elseif op == 'tick' then
  -- ARGV: op, owner id, waiter key, lease ms. Sent with each of a waiter's later BLPOPs,
  -- in the same round trip: renews the waiter's entry, settles a grant, and checks on a
  -- holder whose lease may have run out. A grant to the caller is in its list: the BLPOP
  -- takes it. Returns {ms the owner has left, near the head (1/0)}.
  local owner, wkey = ARGV[2], ARGV[3]
  local now = now_ms()
  local entry = wkey .. '|' .. owner
  settle(now)
  purge_dead(queue, live, now)
  if redis.call('EXISTS', wkey) == 0 then
    renew_entry(queue, live, entry, now)
  end
  if redis.call('EXISTS', owner_key) == 0 then
    grant_next(ARGV[4], now)
  end
  return {left(now), near_head(queue, entry)}
elseif op == 'release' then
  -- ARGV: op, owner id ('' = whoever holds it, as multiprocessing allows), lease ms,
  -- the caller's fencing token (0 without an owner id). Returns 1 (released), 0 (not
  -- held) or -1 (the caller held it, and lost it: its lease ran out, or the server lost
  -- its data in a restart without persistence).
  local current = redis.call('GET', owner_key)
  if not current or (ARGV[2] ~= '' and current ~= ARGV[2]) then
    if ARGV[2] == '' then
      return 0
    end
    if current or redis.call('EXISTS', held) == 1
        or tonumber(redis.call('GET', fence_key) or '0') < tonumber(ARGV[4]) then
      return -1
    end
    return 0  -- released by someone else meanwhile (any process may release a Lock)
  end
  redis.call('DEL', owner_key, held)
  if redis.call('LLEN', queue) > 0 then
    grant_next(ARGV[3], now_ms())
  end
  return 1
elseif op == 'cancel' then
  -- ARGV: op, owner id, waiter key. Returns {1, message} if the wait had been granted
  -- meanwhile (the caller now holds the lock), else {0}.
  local owner, wkey = ARGV[2], ARGV[3]
  local entry = wkey .. '|' .. owner
  redis.call('LREM', queue, 1, entry)
  redis.call('ZREM', live, entry)
  local message = redis.call('LPOP', wkey)
  if message then  -- a grant: claimed now
    redis.call('DEL', wkey)
    settle(now_ms())
    return {1, message}
  end
  if redis.call('GET', owner_key) == owner then  -- popped, but the reply never came
    local h = redis.call('GET', held) or '1'
    return {1, redis.call('GET', fence_key) .. (string.sub(h, 1, 1) == '!' and '!' or '')}
  end
  return {0}
elseif op == 'renew' then
  -- ARGV: op, owner id, lease ms
  if redis.call('GET', owner_key) ~= ARGV[2] then
    return 0
  end
  redis.call('PEXPIRE', owner_key, ARGV[3])
  return 1
elseif op == 'locked' then
  return redis.call('EXISTS', owner_key)  -- a grant not claimed yet counts (until it lapses)
elseif op == 'stats' then
  -- {owner id or '', ms its lease has left, queued live waiters, latest fencing token}
  purge_dead(queue, live, now_ms())
  return {redis.call('GET', owner_key) or '', redis.call('PTTL', owner_key),
          redis.call('LLEN', queue), tonumber(redis.call('GET', fence_key) or '0')}
end
return redis.error_reply('unknown lock operation ' .. op)
