-- Admits one request of one virtual key, atomically for every gateway sharing this Redis.
-- Called by crates/llmux-gateway/src/limits/redis.rs (the bounds are in docs/limits.md).
--
-- KEYS[1] window: sorted set, member "id:tokens", score = admission time (ms, server clock)
-- KEYS[2] held:   sorted set, member "id:tokens:cost", score = expiry of the reservation (ms)
-- KEYS[3] state:  hash: seq (last id), wt (tokens in the window), rt/rc (reserved tokens and
--                 cost of held), st/sc (spent tokens and cost)
-- ARGV: rpm, tpm, budget_tokens, budget_cost ('' = no limit), estimated tokens, estimated cost,
--       store's spent tokens, store's spent cost, reservation expiry (ms), key TTL (ms)
-- Returns {0, id} admitted, {1, wait_ms} over RPM/TPM, {2, 0} over a budget.

if redis.replicate_commands then redis.replicate_commands() end

local win, held, state = KEYS[1], KEYS[2], KEYS[3]
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local budget_tokens, budget_cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local est, est_cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local hold_ms, ttl_ms = tonumber(ARGV[9]), tonumber(ARGV[10])

-- Server time, so gateways whose clocks disagree still share one window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local v = redis.call('HMGET', state, 'wt', 'rt', 'rc', 'st', 'sc')
local wt = tonumber(v[1]) or 0
local rt = tonumber(v[2]) or 0
local rc = tonumber(v[3]) or 0
-- The store's counters may be ahead (usage recorded by a gateway whose settle was lost) or
-- behind (not flushed yet): the larger one is the spend.
local st = math.max(tonumber(v[4]) or 0, tonumber(ARGV[7]))
local sc = math.max(tonumber(v[5]) or 0, tonumber(ARGV[8]))

-- Requests admitted 60 s ago or earlier leave the window, with their tokens.
local cutoff = now - 60000
local old = redis.call('ZRANGEBYSCORE', win, '-inf', cutoff)
for i = 1, #old do
  wt = wt - tonumber(string.match(old[i], ':(%d+)$'))
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', win, '-inf', cutoff) end
local n = redis.call('ZCARD', win)
if n == 0 or wt < 0 then wt = 0 end

-- Reservations past their expiry were never settled (their gateway died): release them.
local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now)
for i = 1, #gone do
  local tokens, cost = string.match(gone[i], '^%d+:(%d+):(.+)$')
  rt = rt - tonumber(tokens)
  rc = rc - tonumber(cost)
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', held, '-inf', now) end
-- With nothing held, the sums are zero (this also clears rounding left in the cost sum).
if redis.call('ZCARD', held) == 0 then
  rt, rc = 0, 0
end
if rt < 0 then rt = 0 end
if rc < 0 then rc = 0 end

local function save()
  redis.call('HSET', state,
    'wt', string.format('%.17g', wt),
    'rt', string.format('%.17g', rt),
    'rc', string.format('%.17g', rc),
    'st', string.format('%.17g', st),
    'sc', string.format('%.17g', sc))
  redis.call('PEXPIRE', win, ttl_ms)
  redis.call('PEXPIRE', held, ttl_ms)
  redis.call('PEXPIRE', state, ttl_ms)
end

-- Budgets: spent + in-flight reservations + this estimate must fit.
local over = budget_tokens ~= nil and st + rt + est > budget_tokens
if budget_cost ~= nil then
  local committed = sc + rc
  if est_cost > 0 then
    over = over or committed + est_cost > budget_cost
  else
    over = over or committed >= budget_cost
  end
end
if over then
  save()
  return {2, 0}
end

-- Rates: the wait is until enough of the oldest requests leave the window.
local wait = 0
if rpm ~= nil and n >= rpm then
  if rpm < 1 then
    wait = 60000
  else
    local e = redis.call('ZRANGE', win, n - rpm, n - rpm, 'WITHSCORES')
    wait = tonumber(e[2]) + 60000 - now
  end
end
if tpm ~= nil and wt + est > tpm then
  local need, freed, from, w = wt + est - tpm, 0, 0, 60000
  local found = false
  while not found do
    local batch = redis.call('ZRANGE', win, from, from + 127, 'WITHSCORES')
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
      freed = freed + tonumber(string.match(batch[i], ':(%d+)$'))
      if freed >= need then
        w = tonumber(batch[i + 1]) + 60000 - now
        found = true
        break
      end
    end
    from = from + 128
  end
  if w > wait then wait = w end
end
if wait > 0 then
  save()
  return {1, wait}
end

local seq = redis.call('HINCRBY', state, 'seq', 1)
local id = string.format('%d', seq)
if rpm ~= nil or tpm ~= nil then
  redis.call('ZADD', win, now, id .. ':' .. ARGV[5])
  wt = wt + est
end
if budget_tokens ~= nil or budget_cost ~= nil then
  redis.call('ZADD', held, now + hold_ms, id .. ':' .. ARGV[5] .. ':' .. ARGV[6])
  rt = rt + est
  rc = rc + est_cost
end
save()
return {0, seq}
