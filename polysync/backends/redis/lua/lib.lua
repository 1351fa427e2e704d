-- Helpers prepended to every polysync script. Every key a script touches shares the
-- primitive's hash tag, so each script runs on one Redis Cluster node.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Send one message to one parked waiter; the list expires if nobody pops it.
local function grant(wkey, msg, ttl_ms)
  redis.call('RPUSH', wkey, msg)
  redis.call('PEXPIRE', wkey, ttl_ms)
end

-- Split a queue entry "waiter key|owner id".
local function split(entry)
  local sep = string.find(entry, '|', 1, true)
  return string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1)
end

-- Take a waiter off a queue. Returns false if it was still queued (nobody sent it
-- anything), or the message it was sent, which it now consumes.
local function cancel(queue, entry, wkey)
  if redis.call('LREM', queue, 1, entry) == 1 then
    return false
  end
  return redis.call('LPOP', wkey)
end

-- cancel() for queues of plain waiter keys: 1 if the waiter had been woken, else 0.
local function cancel_waiter(queue, wkey)
  if cancel(queue, wkey, wkey) then
    return 1
  end
  return 0
end

-- Lock and Semaphore queues: entries "waiter key|owner id" in a list (the order), each
-- also in a sorted set (live) scored with the time its liveness runs out. A blocked
-- waiter renews it at every tick (LIVE_MS), so the entry of a waiter that is gone (killed,
-- or it timed out while its clean-up could not reach the server) lapses.
local function purge_dead(queue, live, now)
  local dead = redis.call('ZRANGEBYSCORE', live, '-inf', '(' .. now)
  if #dead == 0 then
    return
  end
  for _, entry in ipairs(dead) do
    redis.call('LREM', queue, 1, entry)
  end
  redis.call('ZREMRANGEBYSCORE', live, '-inf', '(' .. now)
end

-- Pop the oldest live entry off the queue (dropping lapsed ones on the way), or false.
local function pop_live(queue, live, now)
  while true do
    local entry = redis.call('LPOP', queue)
    if not entry then
      return false
    end
    local expiry = redis.call('ZSCORE', live, entry)
    redis.call('ZREM', live, entry)
    if expiry and tonumber(expiry) >= now then
      return entry
    end
  end
end

-- A waiter's tick: renew its entry's liveness, or queue it again (at the end) if its
-- entry lapsed while it was alive (a server frozen past it, a grant to it revoked). The
-- caller checks first that no grant waits in its list.
local function renew_entry(queue, live, entry, now)
  if not redis.call('ZSCORE', live, entry) then
    redis.call('RPUSH', queue, entry)
  end
  redis.call('ZADD', live, now + LIVE_MS, entry)
end

-- Whether entry is one of the first two in the queue (they watch a grant to the one
-- ahead of them, which lapses after the claim window).
local function near_head(queue, entry)
  return redis.call('LPOS', queue, entry, 'MAXLEN', 2) and 1 or 0
end

-- Queue a new waiter.
local function enqueue(queue, live, entry, now)
  redis.call('RPUSH', queue, entry)
  redis.call('ZADD', live, now + LIVE_MS, entry)
end

-- Send msg to every queued waiter (entries are waiter keys, or "key|owner").
local function wake_all(queue, msg, ttl_ms)
  local entries = redis.call('LRANGE', queue, 0, -1)
  for _, entry in ipairs(entries) do
    local sep = string.find(entry, '|', 1, true)
    local wkey = sep and string.sub(entry, 1, sep - 1) or entry
    grant(wkey, msg, ttl_ms)
  end
  redis.call('DEL', queue)
  return #entries
end

-- Anonymous objects expire once nobody uses them: their meta key (KEYS[1]) records an
-- idle TTL, and every operation gives any key it created a TTL too, so nothing is left
-- behind even by a process killed between two keep-alive rounds. Lease keys (":o")
-- keep their own TTL.
local function keep_alive()
  local meta = redis.call('GET', KEYS[1])
  local ttl = meta and tonumber(string.match(meta, ':(%d+)$')) or 0
  if ttl == 0 then
    return
  end
  for _, key in ipairs(KEYS) do
    if string.sub(key, -2) ~= ':o' and redis.call('PTTL', key) == -1 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
