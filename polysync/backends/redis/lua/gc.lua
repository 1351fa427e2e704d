-- KEYS: meta, then the keys it checks   ARGV: mode, dry run (1/0)
-- 'orphans': KEYS[2..] are keys of one primitive. When its meta key is gone, those of
--   them without a TTL can never expire nor be reached again: they are deleted (unless a
--   dry run) and returned. Keys with a TTL (waiter lists, leases) go by themselves.
-- 'queue': KEYS[2], KEYS[3] are a queue and its liveness set. The entries whose liveness
--   lapsed (their waiter stopped ticking: it died) are removed (unless a dry run) and
--   returned; a live waiter whose entry lapsed queues itself again at its next tick.
local dry = ARGV[2] == '1'
if ARGV[1] == 'orphans' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {}
  end
  local gone = {}
  for i = 2, #KEYS do
    if redis.call('PTTL', KEYS[i]) == -1 then
      gone[#gone + 1] = KEYS[i]
      if not dry then
        redis.call('DEL', KEYS[i])
      end
    end
  end
  return gone
end
local queue, live = KEYS[2], KEYS[3]
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', live, '-inf', '(' .. now)
if not dry then
  purge_dead(queue, live, now)
end
return dead
