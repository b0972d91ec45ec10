-- Settles (or releases) one admission made by admit.lua, in each of its scopes.
-- Called by crates/llmux-gateway/src/limits/redis.rs.
--
-- KEYS: window, held, state, spend per scope (as in admit.lua; spend is that of the period in
--       which the request settles)
-- ARGV: id, estimated tokens, estimated cost (exactly as sent to admit.lua), actual tokens
--       ('' = release: the request was abandoned, spend nothing), actual cost, key TTL (ms)
-- Settling replaces the request's tokens in each TPM window by the actual tokens (if it is still
-- in the window), releases its budget reservations (if they have not expired) and adds the spend.

local id, est, est_cost = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local actual, actual_cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl_ms = tonumber(ARGV[6])

for i = 1, #KEYS / 4 do
  local k = (i - 1) * 4
  local win, held, state, spend = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]

  local v = redis.call('HMGET', state, 'wt', 'rt', 'rc')
  local wt = tonumber(v[1]) or 0
  local rt = tonumber(v[2]) or 0
  local rc = tonumber(v[3]) or 0

  if actual ~= nil then
    local member = id .. ':' .. ARGV[2]
    local at = redis.call('ZSCORE', win, member)
    if at then
      redis.call('ZREM', win, member)
      redis.call('ZADD', win, at, id .. ':' .. ARGV[4])
      wt = wt - est + actual
    end
    local p = redis.call('HMGET', spend, 'st', 'sc')
    local st = (tonumber(p[1]) or 0) + actual
    local sc = (tonumber(p[2]) or 0) + actual_cost
    redis.call('HSET', spend,
      'st', string.format('%.17g', st),
      'sc', string.format('%.17g', sc))
    redis.call('PEXPIRE', spend, ttl_ms)
  end

  if redis.call('ZREM', held, id .. ':' .. ARGV[2] .. ':' .. ARGV[3]) == 1 then
    rt = rt - est
    rc = rc - est_cost
  end
  if redis.call('ZCARD', held) == 0 then
    rt, rc = 0, 0
  end
  if wt < 0 then wt = 0 end
  if rt < 0 then rt = 0 end
  if rc < 0 then rc = 0 end

  redis.call('HSET', state,
    'wt', string.format('%.17g', wt),
    'rt', string.format('%.17g', rt),
    'rc', string.format('%.17g', rc))
  redis.call('PEXPIRE', win, ttl_ms)
  redis.call('PEXPIRE', held, ttl_ms)
  redis.call('PEXPIRE', state, ttl_ms)
end
return 1
