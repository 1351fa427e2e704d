-- A leased, fenced, FIFO lock.
-- KEYS: meta, owner (string: owner id, with the lease as its TTL), fence (counter),
--       queue (list of "waiter key|owner id"), held (set while granted, without a TTL:
--       held but no owner means the holder's lease ran out, so the holder died)
-- ARGV[1]: the operation; the rest depends on it.
local owner_key, fence_key, queue, held = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]

-- Whether the previous holder's lease ran out (it died) rather than it releasing.
local function holder_died()
  return redis.call('EXISTS', held) == 1 and redis.call('EXISTS', owner_key) == 0
end

-- Hand the lock straight to the oldest waiter, so it is never free while anyone waits
-- (no barging) and the waiter wakes already holding it. The message is the fencing
-- token, with '!' appended when the previous holder died.
local function grant_next(lease)
  local entry = redis.call('LPOP', queue)
  if not entry then
    redis.call('DEL', held)
    return false
  end
  local died = holder_died() and '!' or ''
  local wkey, owner = split(entry)
  local token = redis.call('INCR', fence_key)
  -- Leased for the claim window until the new holder's renewer confirms it, so a waiter
  -- that died while queued holds up the next one for that long, not a whole lease.
  redis.call('SET', owner_key, owner, 'PX', math.min(tonumber(lease), CLAIM_MS))
  redis.call('SET', held, '1')
  grant(wkey, token .. died, lease)
  return true
end

if op == 'acquire' then
  -- ARGV: op, owner id, lease ms, waiter key ('' = do not queue), push ('1': the caller
  -- pipelined a BLPOP on its waiter key, so an immediate grant is sent there too)
  if redis.call('EXISTS', owner_key) == 0 then
    if redis.call('LLEN', queue) == 0 then
      local died = holder_died() and 1 or 0
      local token = redis.call('INCR', fence_key)
      redis.call('SET', owner_key, ARGV[2], 'PX', ARGV[3])
      redis.call('SET', held, '1')
      if ARGV[5] == '1' then
        grant(ARGV[4], token .. (died == 1 and '!' or ''), ARGV[3])
      end
      return {1, token, died}
    end
    grant_next(ARGV[3])  -- the holder's lease ran out: the queue goes first
  end
  if ARGV[4] ~= '' then
    redis.call('RPUSH', queue, ARGV[4] .. '|' .. ARGV[2])
  end
  return {0, redis.call('PTTL', owner_key)}
elseif op == 'release' then
  -- ARGV: op, owner id ('' = whoever holds it, as multiprocessing allows), lease ms
  local current = redis.call('GET', owner_key)
  if not current or (ARGV[2] ~= '' and current ~= ARGV[2]) then
    return 0
  end
  redis.call('DEL', owner_key)
  redis.call('DEL', held)
  grant_next(ARGV[3])
  return 1
elseif op == 'cancel' then
  -- ARGV: op, owner id, waiter key
  local got = cancel(queue, ARGV[3] .. '|' .. ARGV[2], ARGV[3])
  if got then
    return {1, got}
  end
  if redis.call('GET', owner_key) == ARGV[2] then  -- granted, message expired
    return {1, redis.call('GET', fence_key)}
  end
  return {0}
elseif op == 'poke' then
  -- ARGV: op, lease ms. A waiter checks on a holder whose lease may have run out.
  if redis.call('EXISTS', owner_key) == 0 then
    grant_next(ARGV[2])
  end
  return redis.call('PTTL', owner_key)
elseif op == 'renew' then
  -- ARGV: op, owner id, lease ms
  if redis.call('GET', owner_key) ~= ARGV[2] then
    return 0
  end
  redis.call('PEXPIRE', owner_key, ARGV[3])
  return 1
elseif op == 'locked' then
  return redis.call('EXISTS', owner_key)
elseif op == 'stats' then
  -- {owner id or '', ms its lease has left, queued waiters, latest fencing token}
  return {redis.call('GET', owner_key) or '', redis.call('PTTL', owner_key),
          redis.call('LLEN', queue), tonumber(redis.call('GET', fence_key) or '0')}
end
return redis.error_reply('unknown lock operation ' .. op)
