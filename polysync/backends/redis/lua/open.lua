-- KEYS: meta, [init key]   ARGV: kind:param, create (1/0), idle ttl ms (0: none), [init value]
-- The meta key holds "kind:param:idle ttl ms". Returns "" when this call created the
-- object, the existing meta value when it existed, or false when it does not exist and
-- create is 0.
local found = redis.call('GET', KEYS[1])
if found then
  return found
end
if ARGV[2] ~= '1' then
  return false
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[3])
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[4])
end
if ARGV[3] ~= '0' then
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
return ''
