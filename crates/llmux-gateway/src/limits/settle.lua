-- Settles (or releases) one admission made by admit.lua.
-- Called by crates/llmux-gateway/src/limits/redis.rs.
--
-- KEYS: window, held, state (as in admit.lua)
-- ARGV: id, estimated tokens, estimated cost (exactly as sent to admit.lua), actual tokens
--       ('' = release: the request was abandoned, spend nothing), actual cost, key TTL (ms)
-- Settling replaces the request's tokens in the TPM window by the actual tokens (if it is still
-- in the window), releases its budget reservation (if it has not expired) and adds the spend.

local win, held, state = KEYS[1], KEYS[2], KEYS[3]
local id, est, est_cost = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local actual, actual_cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl_ms = tonumber(ARGV[6])

local v = redis.call('HMGET', state, 'wt', 'rt', 'rc', 'st', 'sc')
local wt = tonumber(v[1]) or 0
local rt = tonumber(v[2]) or 0
local rc = tonumber(v[3]) or 0
local st = tonumber(v[4]) or 0
local sc = tonumber(v[5]) or 0

if actual ~= nil then
  local member = id .. ':' .. ARGV[2]
  local at = redis.call('ZSCORE', win, member)
  if at then
    redis.call('ZREM', win, member)
    redis.call('ZADD', win, at, id .. ':' .. ARGV[4])
    wt = wt - est + actual
  end
  st = st + actual
  sc = sc + actual_cost
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
  'rc', string.format('%.17g', rc),
  'st', string.format('%.17g', st),
  'sc', string.format('%.17g', sc))
redis.call('PEXPIRE', win, ttl_ms)
redis.call('PEXPIRE', held, ttl_ms)
redis.call('PEXPIRE', state, ttl_ms)
return 1
