-- Admits one request atomically for every gateway sharing this Redis: against the limits of
-- its virtual key and, for a key in a team, of the team too (both must allow it; both reserve).
-- Called by crates/llmux-gateway/src/limits/redis.rs (the bounds are in docs/limits.md).
--
-- KEYS, four per scope (the key first, then its team; all under one hash tag):
--   window: sorted set, member "id:tokens", score = admission time (ms, server clock)
--   held:   sorted set, member "id:tokens:cost", score = expiry of the reservation (ms)
--   state:  hash: seq (last id), wt (tokens in the window), rt/rc (reserved tokens and cost of
--           held)
--   spend:  hash: st/sc (spent tokens and cost) of the current budget period (the state hash
--           itself for a lifetime budget, a key named by the period's label otherwise)
-- ARGV: estimated tokens, estimated cost, reservation expiry (ms), key TTL (ms), then six per
--       scope: rpm, tpm, budget_tokens, budget_cost ('' = no limit), the store's spent tokens
--       and cost for the current period
-- Returns {0, id} admitted, {1, wait_ms, scope} over RPM/TPM, {2, 0, scope} over a budget
-- (scope: 1 the key, 2 the team).

if redis.replicate_commands then redis.replicate_commands() end

local est, est_cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local hold_ms, ttl_ms = tonumber(ARGV[3]), tonumber(ARGV[4])

-- Server time, so gateways whose clocks disagree still share one window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - 60000

local scopes = {}
for i = 1, #KEYS / 4 do
  local k, a = (i - 1) * 4, 4 + (i - 1) * 6
  local s = {
    win = KEYS[k + 1], held = KEYS[k + 2], state = KEYS[k + 3], spend = KEYS[k + 4],
    rpm = tonumber(ARGV[a + 1]), tpm = tonumber(ARGV[a + 2]),
    budget_tokens = tonumber(ARGV[a + 3]), budget_cost = tonumber(ARGV[a + 4]),
  }
  local v = redis.call('HMGET', s.state, 'wt', 'rt', 'rc')
  s.wt = tonumber(v[1]) or 0
  s.rt = tonumber(v[2]) or 0
  s.rc = tonumber(v[3]) or 0
  -- The store's counters may be ahead (usage recorded by a gateway whose settle was lost) or
  -- behind (not flushed yet): the larger one is the spend.
  local p = redis.call('HMGET', s.spend, 'st', 'sc')
  s.st = math.max(tonumber(p[1]) or 0, tonumber(ARGV[a + 5]))
  s.sc = math.max(tonumber(p[2]) or 0, tonumber(ARGV[a + 6]))

  -- Requests admitted 60 s ago or earlier leave the window, with their tokens.
  local old = redis.call('ZRANGEBYSCORE', s.win, '-inf', cutoff)
  for j = 1, #old do
    s.wt = s.wt - tonumber(string.match(old[j], ':(%d+)$'))
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', s.win, '-inf', cutoff) end
  s.n = redis.call('ZCARD', s.win)
  if s.n == 0 or s.wt < 0 then s.wt = 0 end

  -- Reservations past their expiry were never settled (their gateway died): release them.
  local gone = redis.call('ZRANGEBYSCORE', s.held, '-inf', now)
  for j = 1, #gone do
    local tokens, cost = string.match(gone[j], '^%d+:(%d+):(.+)$')
    s.rt = s.rt - tonumber(tokens)
    s.rc = s.rc - tonumber(cost)
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', s.held, '-inf', now) end
  -- With nothing held, the sums are zero (this also clears rounding left in the cost sum).
  if redis.call('ZCARD', s.held) == 0 then
    s.rt, s.rc = 0, 0
  end
  if s.rt < 0 then s.rt = 0 end
  if s.rc < 0 then s.rc = 0 end
  scopes[i] = s
end

local function save()
  for _, s in ipairs(scopes) do
    redis.call('HSET', s.state,
      'wt', string.format('%.17g', s.wt),
      'rt', string.format('%.17g', s.rt),
      'rc', string.format('%.17g', s.rc))
    redis.call('HSET', s.spend,
      'st', string.format('%.17g', s.st),
      'sc', string.format('%.17g', s.sc))
    redis.call('PEXPIRE', s.win, ttl_ms)
    redis.call('PEXPIRE', s.held, ttl_ms)
    redis.call('PEXPIRE', s.state, ttl_ms)
    redis.call('PEXPIRE', s.spend, ttl_ms)
  end
end

-- Budgets: spent + in-flight reservations + this estimate must fit, in every scope.
for i, s in ipairs(scopes) do
  local over = s.budget_tokens ~= nil and s.st + s.rt + est > s.budget_tokens
  if s.budget_cost ~= nil then
    local committed = s.sc + s.rc
    if est_cost > 0 then
      over = over or committed + est_cost > s.budget_cost
    else
      over = over or committed >= s.budget_cost
    end
  end
  if over then
    save()
    return {2, 0, i}
  end
end

-- Rates: the wait is until enough of the oldest requests leave the window; the longest wait
-- of any scope is the answer.
local wait, which = 0, 0
for i, s in ipairs(scopes) do
  local w_scope = 0
  if s.rpm ~= nil and s.n >= s.rpm then
    if s.rpm < 1 then
      w_scope = 60000
    else
      local e = redis.call('ZRANGE', s.win, s.n - s.rpm, s.n - s.rpm, 'WITHSCORES')
      w_scope = tonumber(e[2]) + 60000 - now
    end
  end
  if s.tpm ~= nil and s.wt + est > s.tpm then
    local need, freed, from, w = s.wt + est - s.tpm, 0, 0, 60000
    local found = false
    while not found do
      local batch = redis.call('ZRANGE', s.win, from, from + 127, 'WITHSCORES')
      if #batch == 0 then break end
      for j = 1, #batch, 2 do
        freed = freed + tonumber(string.match(batch[j], ':(%d+)$'))
        if freed >= need then
          w = tonumber(batch[j + 1]) + 60000 - now
          found = true
          break
        end
      end
      from = from + 128
    end
    if w > w_scope then w_scope = w end
  end
  if w_scope > wait then wait, which = w_scope, i end
end
if wait > 0 then
  save()
  return {1, wait, which}
end

-- The id comes from the last scope (the team's, when there is one), so it is unique in every
-- window and held set it is added to.
local seq = redis.call('HINCRBY', scopes[#scopes].state, 'seq', 1)
local id = string.format('%d', seq)
for _, s in ipairs(scopes) do
  if s.rpm ~= nil or s.tpm ~= nil then
    redis.call('ZADD', s.win, now, id .. ':' .. ARGV[1])
    s.wt = s.wt + est
  end
  if s.budget_tokens ~= nil or s.budget_cost ~= nil then
    redis.call('ZADD', s.held, now + hold_ms, id .. ':' .. ARGV[1] .. ':' .. ARGV[2])
    s.rt = s.rt + est
    s.rc = s.rc + est_cost
  end
end
save()
return {0, seq}
