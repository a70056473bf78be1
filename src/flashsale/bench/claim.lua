-- wrk script for `flashsale bench`: every request claims the coupon for a
-- new user (thread id + counter), every thread counts the status codes it
-- saw, and done() prints one parseable line with the totals.
-- Arguments (after --): coupon name, request path, user id prefix (unique
-- per run, so a second run against the same coupon still has new users),
-- then "idempotency" (every request then carries an Idempotency-Key of its
-- own: the user id, unique per request and run) or "-", then the number of
-- coupons N: above 1, each request claims coupon "<name>_k" with k drawn
-- from a Zipf(1) law over 1..N (P(k) proportional to 1/k). Instead of
-- "idempotency", "tokens=<file>": every request carries the next
-- Authorization value of <file>.<thread id> ("Bearer <token>", one a line,
-- minted ahead of the run) and no user_id (the token's sub is the user:
-- CLAIM_AUTH=user, docs/access.md; flashsale bench --claimers, bench/tokens.py).
-- Past the file's last line the tokens repeat (the bench counts the reuses).
-- "bearer=<token>" (alone or after "idempotency,"): every request also
-- carries that one bearer token (the shop's backend's, claiming for the new
-- user of the body: CLAIM_AUTH=backend, which a raffle's entrants need).

local threads = {}
local next_thread = 0

function setup(thread)
   next_thread = next_thread + 1
   thread:set("thread_id", next_thread)
   table.insert(threads, thread)
end

local coupon = "BENCH"
local path = "/api/coupons/claim"
local counter = 0
local prefix = "w"
local keyed = false
local tokens = nil
local own_body = nil
local next_token = 0
local headers = { ["Content-Type"] = "application/json" }
local zipf = nil -- cumulative probabilities of coupons 1..N, when N > 1
counts = {}

local function zipf_table(n)
   local total, cumulative = 0, {}
   for k = 1, n do
      total = total + 1 / k
      cumulative[k] = total
   end
   for k = 1, n do
      cumulative[k] = cumulative[k] / total
   end
   return cumulative
end

local function draw_coupon()
   local u, low, high = math.random(), 1, #zipf
   while low < high do -- the first k whose cumulative probability reaches u
      local mid = math.floor((low + high) / 2)
      if zipf[mid] < u then low = mid + 1 else high = mid end
   end
   return string.format("%s_%d", coupon, low)
end

function init(args)
   coupon = args[1] or coupon
   path = args[2] or path
   prefix = args[3] or prefix
   keyed = args[4] ~= nil and string.match(args[4], "^idempotency") ~= nil
   local bearer = args[4] and string.match(args[4], "bearer=([^,]+)$")
   if bearer then
      headers["Authorization"] = "Bearer " .. bearer
   end
   local file = args[4] and string.match(args[4], "^tokens=(.+)$")
   if file then
      tokens = {}
      own_body = string.format('{"coupon_name":"%s"}', coupon)
      for line in io.lines(file .. "." .. thread_id) do
         table.insert(tokens, line)
      end
   end
   local n = tonumber(args[5] or "1")
   if n > 1 then
      zipf = zipf_table(n)
      math.randomseed(os.time() * 1000 + thread_id)
   end
end

function request()
   if tokens then
      next_token = next_token % #tokens + 1
      headers["Authorization"] = tokens[next_token]
      return wrk.format("POST", path, headers, own_body)
   end
   counter = counter + 1
   local user = string.format("%s%d-%d", prefix, thread_id, counter)
   local name = zipf and draw_coupon() or coupon
   local body = string.format('{"user_id":"%s","coupon_name":"%s"}', user, name)
   if keyed then
      headers["Idempotency-Key"] = user
   end
   return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

local function statuses_json()
   local totals = {}
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("counts")) do
         totals[status] = (totals[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(totals) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'FLASHSALE_WRK {"duration_us":%d,"requests":%d,"statuses":%s,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%.0f,"p99":%.0f,"max":%.0f,"mean":%.0f}}\n',
      summary.duration, summary.requests, statuses_json(),
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
