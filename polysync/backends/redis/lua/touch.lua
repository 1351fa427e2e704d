-- KEYS: every key of an anonymous object   ARGV: idle ttl ms
-- Keeps an anonymous object alive while some process uses it. Returns 0 if it is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for _, key in ipairs(KEYS) do
  if string.sub(key, -2) ~= ':o' then  -- a lease keeps its own TTL
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 1
