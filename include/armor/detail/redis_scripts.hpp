// armor/detail/redis_scripts.hpp: the Lua scripts armor runs inside Redis.
// Not API. Each state transition is one script: one round trip, atomic in
// Redis (a script runs alone), on keys of one hash slot.
//
// Numbers. Redis runs Lua 5.1, whose numbers are doubles: integers are exact
// below 2^53. The scripts therefore count time in microseconds (a wall time
// is about 1.7e15 us) and the C++ side refuses quota windows whose slices
// are narrower than a microsecond (their numbers would pass 2^53). Numbers
// are written to Redis with string.format('%d'), never tostring(), which
// would print 1.7e+15.
//
// Quota layout. One hash per window of a tracker:
//
//   field "l"        the latest slice (period or bucket) stored
//   field "<slice>"  the units used in that slice
//   fields "ap", "af"  the alert record: the alert period and how many
//                    thresholds fired in it (armor::alert_quota_storage)
//
// A fixed window keeps one slice field, a rolling one the latest slice and
// the `buckets` before it; older fields are deleted when the window moves
// on, and the key expires by itself when its newest slice stops counting.
// The rules are those of storage/quota_storage.hpp, statement for statement.
#pragma once

#include <cstddef>
#include <string_view>

namespace armor::detail {

/// The scripts, by number (redis_client keeps their SHA1 per connection).
enum class redis_script : std::size_t {
  quota_consume = 0,
  quota_release,
  quota_read,
  quota_alert,
  bucket_acquire,
  bucket_return,
  bucket_configure,
  breaker_sync,
  window_fixed,
  window_exact,
  window_approx,
  count
};

// Shared helpers: exact floor division on doubles, the civil calendar
// (Howard Hinnant's days_from_civil / civil_from_days), and a window's
// slice arithmetic, mirroring detail/quota_calendar.hpp in microseconds.
inline constexpr std::string_view redis_lua_prelude = R"lua(
local function fdiv(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
  return q
end
local function fmt(x) return string.format('%d', x) end
local DAY = 86400000000
local function civil(z)
  z = z + 719468
  local era = fdiv(z, 146097)
  local doe = z - era * 146097
  local yoe = fdiv(doe - fdiv(doe, 1460) + fdiv(doe, 36524) - fdiv(doe, 146096), 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + fdiv(yoe, 4) - fdiv(yoe, 100))
  local mp = fdiv(5 * doy + 2, 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m
end
local function first_of_month(y, m)
  if m <= 2 then y = y - 1 end
  local era = fdiv(y, 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doe = yoe * 365 + fdiv(yoe, 4) - fdiv(yoe, 100) + fdiv(153 * mp + 2, 5)
  return era * 146097 + doe - 719468
end
-- cut: 0 periods of `step` us, 1 calendar months
local function index(cut, step, shift, t)
  local l = t + shift
  if cut == 1 then
    local y, m = civil(fdiv(l, DAY))
    return (y - 1970) * 12 + m - 1
  end
  return fdiv(l, step)
end
local function start(cut, step, shift, i)
  if cut == 1 then
    local y = 1970 + fdiv(i, 12)
    return first_of_month(y, i - fdiv(i, 12) * 12 + 1) * DAY - shift
  end
  return i * step - shift
end
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if redis.replicate_commands then pcall(redis.replicate_commands) end
)lua";

// quota_consume: n units in every window, or none.
//   ARGV: n, need (room required: max(n, 1)), want (>= n: a lease takes up
//   to `want` if every window has room), check (1: limits apply),
//   server (1: slices from Redis's TIME), cap (the count's ceiling),
//   then per window: at, limit, buckets, cut, step_us, shift_us.
//   Returns {0, 0, granted, slice_1, used_1, ...} or {1, w (0-based), 0, slice, used}.
inline constexpr std::string_view redis_lua_quota_consume = R"lua(
local n = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local check = ARGV[4] == '1'
local server = ARGV[5] == '1'
local cap = tonumber(ARGV[6])
local now = server and server_now() or 0
local W = #KEYS
local win = {}
local room = want
for w = 1, W do
  local b = 6 + (w - 1) * 6
  local x = {at = tonumber(ARGV[b + 1]), limit = tonumber(ARGV[b + 2]), nb = tonumber(ARGV[b + 3]),
             cut = tonumber(ARGV[b + 4]), step = tonumber(ARGV[b + 5]), shift = tonumber(ARGV[b + 6])}
  if server then x.at = index(x.cut, x.step, x.shift, now) end
  local key = KEYS[w]
  x.l = tonumber(redis.call('HGET', key, 'l'))
  x.s = x.at
  if x.l and x.l > x.s then x.s = x.l end
  x.cur = 0
  if x.l == x.s then x.cur = tonumber(redis.call('HGET', key, fmt(x.s))) or 0 end
  x.past = 0
  if x.nb > 0 then
    local f = {}
    for k = 1, x.nb do f[k] = fmt(x.s - x.nb + k - 1) end
    local v = redis.call('HMGET', key, unpack(f))
    for k = 1, x.nb do
      local u = tonumber(v[k])
      if u then x.past = x.past + u end
    end
    if x.past > cap then x.past = cap end
  end
  local used = x.past + x.cur
  if used > cap then used = cap end
  if check and used + need > x.limit then return {1, w - 1, 0, x.s, used} end
  if x.limit - used < room then room = x.limit - used end
  win[w] = x
end
local g = n
if want > n and check then g = room end
if g > cap then g = cap end
local out = {0, 0, g}
for w = 1, W do
  local x = win[w]
  local key = KEYS[w]
  local after = x.cur + g
  if after > cap then after = cap end
  redis.call('HSET', key, 'l', fmt(x.s), fmt(x.s), fmt(after))
  if x.l and x.s > x.l then
    local from = x.l - x.nb
    local to = x.s - x.nb - 1
    if to > x.l then to = x.l end
    for f = from, to do redis.call('HDEL', key, fmt(f)) end
  end
  local e = start(x.cut, x.step, x.shift, x.s + x.nb + 1)
  if server then
    redis.call('PEXPIREAT', key, fmt(math.ceil(e / 1000) + 1000))
  else
    redis.call('PEXPIRE', key, fmt(math.ceil((e - start(x.cut, x.step, x.shift, x.s)) / 1000) + 1000))
  end
  local u = x.past + after
  if u > cap then u = cap end
  out[#out + 1] = x.s
  out[#out + 1] = u
end
return out
)lua";

// quota_release: gives n units back to the slices named, in each window
// still counting them, never below zero.
//   ARGV: n, then per window: at, buckets.
inline constexpr std::string_view redis_lua_quota_release = R"lua(
local n = tonumber(ARGV[1])
for w = 1, #KEYS do
  local key = KEYS[w]
  local at = tonumber(ARGV[2 + (w - 1) * 2])
  local nb = tonumber(ARGV[3 + (w - 1) * 2])
  local l = tonumber(redis.call('HGET', key, 'l'))
  if l and (at == l or (nb > 0 and at < l and l - at <= nb)) then
    local f = fmt(at)
    local v = tonumber(redis.call('HGET', key, f))
    if v and v > 0 then
      local left = v - n
      if left < 0 then left = 0 end
      redis.call('HSET', key, f, fmt(left))
    end
  end
end
return 0
)lua";

// quota_read: one window's counts as of slice `at` (or the later slice it
// holds): {slice, count} for a fixed window, {slice, oldest bucket, ...,
// current bucket} for a rolling one.
//   ARGV: server, at, buckets, cut, step_us, shift_us.
inline constexpr std::string_view redis_lua_quota_read = R"lua(
local key = KEYS[1]
local s = tonumber(ARGV[2])
local nb = tonumber(ARGV[3])
if ARGV[1] == '1' then s = index(tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), server_now()) end
local l = tonumber(redis.call('HGET', key, 'l'))
if l and l > s then s = l end
local out = {s}
local f = {}
for k = 0, nb do f[k + 1] = fmt(s - nb + k) end
local v = redis.call('HMGET', key, unpack(f))
for k = 0, nb do out[k + 2] = tonumber(v[k + 1]) or 0 end
return out
)lua";

// quota_alert: a window's alert record (fields "ap", "af" of its hash).
//   ARGV: claim (1: claim_alerts, 0: rearm_alerts), period, fired.
//   claim: records `fired` thresholds for the period and returns how many
//   were recorded for it before (0 for an earlier period or none, `fired`
//   for a later one). A missing hash (the window's counts expired) gets no
//   record: it would never expire. rearm: lowers the period's record to
//   `fired`. The record shares the hash's expiry, which outlasts its period
//   (a fixed window's hash expires after its period ends, a rolling one's
//   after its last bucket leaves, later than the end of any alert span it
//   counted in).
inline constexpr std::string_view redis_lua_quota_alert = R"lua(
local key = KEYS[1]
local p = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local h = redis.call('HMGET', key, 'ap', 'af')
local ap = tonumber(h[1])
local af = tonumber(h[2]) or 0
if ARGV[1] == '1' then
  if ap and ap > p then return n end
  local before = 0
  if ap == p then before = af end
  if n > before and redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'ap', fmt(p), 'af', fmt(n)) end
  return before
end
if ap == p and af > n then redis.call('HSET', key, 'af', fmt(n)) end
return 0
)lua";

// ---------------------------------------------------------------------------
// Token bucket (armor::redis_token_bucket, armor/redis/token_bucket.hpp).
//
// The GCRA of detail/bucket_state.hpp on one hash per bucket. A rate of c
// tokens per p ns (lowest terms) counts time in ticks of 1/c ns; a token is
// p ticks; tau = burst * p. Fields:
//
//   t        the TAT, in ticks after the base (0 <= t <= 2^52)
//   s, n     the base: a time, as whole seconds and nanoseconds (0..1e9-1)
//   c, p, b  the config the ticks belong to
//   q        a write counter (from Redis's TIME in us when the key is made),
//            so that a lease is given back only if nothing was written since
//
// The config key (`...:config`, written only by set_rate/set_burst) holds
// the current c, p, b and the time s, n of the change; without it the
// caller's construction options are the config.
//
// Exactness. Lua numbers are doubles, exact for integers up to 2^53. Every
// write re-bases the state at the decision's time when that time is not
// before the base, so t stays within [0, tau]; the C++ side refuses
// tau > 2^52 (LIMIT) at construction and the configure script refuses it
// for a new burst. A time is judged relative to the base: at or after it by
// d ns, the TAT counts down by d * c, computed only when d < ceil(t / c)
// (else the bucket is full), so d * c < t + c <= 2^53. Before the base, the
// ticks nt = d * c are clamped at -LOW = -2^51 (fewer tokens, never more).
// With t <= 2^52, -2^51 <= nt <= 0 and n * p <= tau <= 2^52, every value
// the scripts form (debt = t - nt, late = t + n * p - nt - tau, the new
// TAT t + g * p <= nt + tau) lies within [-2^52, 2^53]. Time differences
// are formed as (seconds * 1e9 + nanoseconds) only within FAR = 9e6 s
// (|d| < 9.0000001e15 < 2^53); farther ahead the bucket is full (a debt of
// at most 2^52 ticks is at most 2^52 ns < 9e6 s), farther behind clamped.
// Converting to a new config (the rule of bucket_state::reconfigure)
// splits the debt into whole tokens and a remainder r < p_old, and forms
// ceil(r * p_new / p_old) by binary long multiplication with remainders
// below p_old <= 2^52 (mulceil), never the 104-bit product.
inline constexpr std::string_view redis_lua_bucket_prelude = R"lua(
local LIMIT = 4503599627370496
local LOW = 2251799813685248
local FAR = 9000000
local NS = 1000000000
local function cdiv(a, b) return fdiv(a + b - 1, b) end
local function time_of(server, s, n)
  if server then
    local t = redis.call('TIME')
    return tonumber(t[1]), tonumber(t[2]) * 1000
  end
  return s, n
end
local function span(s1, n1, s2, n2)
  local ds = s2 - s1
  if ds > FAR then return 1152921504606846976 end
  if ds < -FAR then return -1152921504606846976 end
  return ds * NS + (n2 - n1)
end
local function current(key, c, p, b)
  local h = redis.call('HMGET', key, 'c', 'p', 'b', 's', 'n')
  if h[1] then return tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), tonumber(h[4]), tonumber(h[5]) end
  return c, p, b, nil, nil
end
local function load(key, s, n, c, p, b)
  local h = redis.call('HMGET', key, 't', 's', 'n', 'c', 'p', 'b', 'q')
  if h[1] then
    return {t = tonumber(h[1]), s = tonumber(h[2]), n = tonumber(h[3]), c = tonumber(h[4]), p = tonumber(h[5]),
            b = tonumber(h[6]), q = tonumber(h[7])}
  end
  local now = redis.call('TIME')
  return {t = 0, s = s, n = n, c = c, p = p, b = b, q = tonumber(now[1]) * 1000000 + tonumber(now[2])}
end
-- The state at time (s, n): a time at or after the base becomes the base
-- (the TAT counted down, at least 0) and the result is 0; an earlier time
-- leaves the state as it is and gives its ticks before the base (< 0).
local function move(st, s, n)
  local d = span(st.s, st.n, s, n)
  if d >= 0 then
    if d >= cdiv(st.t, st.c) then st.t = 0 else st.t = st.t - d * st.c end
    st.s = s
    st.n = n
    return 0
  end
  if -d > fdiv(LOW, st.c) then return -LOW end
  return d * st.c
end
-- ceil(a * b / m) for 0 <= a < m <= 2^52, 0 < b <= 2^52, exactly.
local function mulceil(a, b, m)
  local bits = {}
  local x = b
  while x > 0 do
    local h = fdiv(x, 2)
    bits[#bits + 1] = x - 2 * h
    x = h
  end
  local q, r = 0, 0
  for i = #bits, 1, -1 do
    q = q * 2
    r = r * 2
    if r >= m then r = r - m; q = q + 1 end
    if bits[i] == 1 then
      r = r + a
      if r >= m then r = r - m; q = q + 1 end
    end
  end
  if r > 0 then q = q + 1 end
  return q
end
-- Switches the state, nt ticks after its base, to config (c, p, b) at time
-- (s, n), keeping its tokens (bucket_state::reconfigure): the debt in
-- whole old tokens w and a remainder r, new debt (b - (b_old - w)) * p +
-- ceil(r * p / p_old), at least 0.
local function convert(st, nt, s, n, c, p, b)
  local debt = st.t - nt
  local w = fdiv(debt, st.p)
  local r = debt - w * st.p
  local k = b - (st.b - w)
  local v = 0
  if k >= 0 then
    if k > fdiv(LIMIT, p) then
      v = LIMIT
    else
      v = k * p + mulceil(r, p, st.p)
      if v > LIMIT then v = LIMIT end
    end
  end
  st.t, st.s, st.n, st.c, st.p, st.b = v, s, n, c, p, b
end
-- A state written under an older config is converted at the time of the
-- change (within [base, now]; the base when the change time is unknown).
local function adopt(st, c, p, b, cs, cn, s, n)
  if st.c == c and st.p == p and st.b == b then return end
  local ts, tn = st.s, st.n
  if cs and span(st.s, st.n, cs, cn) > 0 then ts, tn = cs, cn end
  if span(st.s, st.n, s, n) >= 0 and span(ts, tn, s, n) < 0 then ts, tn = s, n end
  move(st, ts, tn)
  convert(st, 0, ts, tn, c, p, b)
end
-- Writes the state (nt: now's ticks after its base) and its expiry: when
-- the bucket is full again, plus a second (server time), or plus a minute
-- of Redis's time after the caller's debt (caller time, which Redis cannot
-- follow).
local function save(key, st, server, s, n, nt)
  st.q = st.q + 1
  redis.call('HSET', key, 't', fmt(st.t), 's', fmt(st.s), 'n', fmt(st.n), 'c', fmt(st.c), 'p', fmt(st.p),
             'b', fmt(st.b), 'q', fmt(st.q))
  local ms = cdiv(cdiv(st.t - nt, st.c), 1000000)
  if server then
    redis.call('PEXPIREAT', key, fmt(s * 1000 + fdiv(n, 1000000) + ms + 1000))
  else
    redis.call('PEXPIRE', key, fmt(ms + 60000))
  end
end
)lua";

// bucket_acquire: n tokens (up to `want` >= n for a lease) or none.
//   KEYS: the bucket, the config key.
//   ARGV: server, now_s, now_ns (caller time), n, want, c, p, b (the
//   caller's config, used without a config key).
//   Returns {status (0 granted, 1 denied, 2 too large), debt, late,
//   granted, c, p, b, q, t} (q, t: what a grant wrote, for a give-back).
inline constexpr std::string_view redis_lua_bucket_acquire = R"lua(
local server = ARGV[1] == '1'
local s, n = time_of(server, tonumber(ARGV[2]), tonumber(ARGV[3]))
local need = tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local c, p, b, cs, cn = current(KEYS[2], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
local st = load(KEYS[1], s, n, c, p, b)
adopt(st, c, p, b, cs, cn, s, n)
local nt = move(st, s, n)
if need > b then return {2, st.t - nt, 0, 0, c, p, b, 0, 0} end
local late = st.t + need * p - nt - b * p
if late > 0 then return {1, st.t - nt, late, 0, c, p, b, 0, 0} end
local g = need
if want > need then
  local more = fdiv(-late, p)
  if more > want - need then more = want - need end
  g = need + more
end
if g > 0 then
  st.t = st.t + g * p
  save(KEYS[1], st, server, s, n, nt)
end
return {0, st.t - nt, st.t - nt - b * p, g, c, p, b, st.q, st.t}
)lua";

// bucket_return: gives k tokens of a lease back (t -= k * p) if the bucket
// is exactly as the lease's grant left it (same q and t, same config).
//   KEYS: the bucket. ARGV: q, t, k, c, p, b. Returns 1 if given back.
inline constexpr std::string_view redis_lua_bucket_return = R"lua(
local h = redis.call('HMGET', KEYS[1], 't', 'q', 'c', 'p', 'b')
if not h[1] then return 0 end
if tonumber(h[2]) ~= tonumber(ARGV[1]) or tonumber(h[1]) ~= tonumber(ARGV[2]) then return 0 end
if tonumber(h[3]) ~= tonumber(ARGV[4]) or tonumber(h[4]) ~= tonumber(ARGV[5]) or tonumber(h[5]) ~= tonumber(ARGV[6]) then
  return 0
end
local t = tonumber(h[1]) - tonumber(ARGV[3]) * tonumber(ARGV[5])
if t < 0 then t = 0 end
redis.call('HSET', KEYS[1], 't', fmt(t), 'q', fmt(tonumber(h[2]) + 1))
return 1
)lua";

// bucket_configure: a new rate and/or burst for every instance, converting
// the (unkeyed) bucket now, keeping its tokens; keyed buckets convert when
// next used (adopt).
//   KEYS: the config key, the bucket.
//   ARGV: server, now_s, now_ns, c, p, b (the caller's config), new c, new p
//   (0: keep the rate), new b (0: keep the burst).
//   Returns {0, c, p, b} (the config now), or {1, c, p, b} refused: tau > 2^52.
inline constexpr std::string_view redis_lua_bucket_configure = R"lua(
local server = ARGV[1] == '1'
local s, n = time_of(server, tonumber(ARGV[2]), tonumber(ARGV[3]))
local c, p, b, cs, cn = current(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
local nc, np, nb = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if nc == 0 then nc, np = c, p end
if nb == 0 then nb = b end
if nb > fdiv(LIMIT, np) then return {1, nc, np, nb} end
if nc == c and np == p and nb == b then return {0, nc, np, nb} end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local st = load(KEYS[2], s, n, c, p, b)
  adopt(st, c, p, b, cs, cn, s, n)
  local nt = move(st, s, n)
  convert(st, nt, s, n, nc, np, nb)
  save(KEYS[2], st, server, s, n, 0)
end
redis.call('HSET', KEYS[1], 'c', fmt(nc), 'p', fmt(np), 'b', fmt(nb), 's', fmt(s), 'n', fmt(n))
return {0, nc, np, nb}
)lua";

// breaker_sync: one round trip of an armor::redis_circuit_breaker instance:
// its outcomes since the last sync in, the shared state out. Times in
// milliseconds. Layout: hash KEYS[1] with fields ph (0 closed, 1 open, 2
// half-open), g (generation), u (open until), w (window index), c (calls
// in the window), f (failures in it), p (probe slots granted), ps (probe
// successes), t (when probes were last granted); set KEYS[2]: the
// instances that reported a failure in the current window.
//   ARGV: server, now_s, now_ns (caller time), instance, gen (whose
//   outcomes these are), successes, failures, probe successes, probe
//   failures, probes released, probes wanted, window_ms, rate_ppm,
//   minimum_calls, min_instances, open_ms, half_open_max, success_threshold.
//   Returns {phase, gen, open ms left, probes granted, reporters}.
inline constexpr std::string_view redis_lua_breaker_sync = R"lua(
local now
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2]) * 1000 + math.floor(tonumber(ARGV[3]) / 1000000)
end
local inst, mine = ARGV[4], tonumber(ARGV[5])
local ok, bad = tonumber(ARGV[6]), tonumber(ARGV[7])
local pok, pbad, prel, want = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local wms, ppm, minc, mini = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local oms, hmax, sth = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
local h = redis.call('HMGET', KEYS[1], 'ph', 'g', 'u', 'w', 'c', 'f', 'p', 'ps', 't')
local ph, g, u = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
local w, c, f = tonumber(h[4]) or 0, tonumber(h[5]) or 0, tonumber(h[6]) or 0
local p, ps, t = tonumber(h[7]) or 0, tonumber(h[8]) or 0, tonumber(h[9]) or 0
local function close()
  ph, g, c, f, w, p, ps = 0, g + 1, 0, 0, math.floor(now / wms), 0, 0
  redis.call('DEL', KEYS[2])
end
local function trip()
  ph, g, u, c, f, p, ps = 1, g + 1, now + oms, 0, 0, 0, 0
  redis.call('DEL', KEYS[2])
end
if ph == 0 then
  local nw = math.floor(now / wms)
  if nw > w then
    w, c, f = nw, 0, 0
    redis.call('DEL', KEYS[2])
  end
  if mine == g then
    c = c + ok + bad
    f = f + bad
    if bad > 0 then
      redis.call('SADD', KEYS[2], inst)
      redis.call('PEXPIRE', KEYS[2], fmt(2 * wms))
    end
  end
  if c >= minc and f * 1000000 >= ppm * c and redis.call('SCARD', KEYS[2]) >= mini then trip() end
elseif ph == 2 and mine == g then
  p = p - prel - pok
  if p < 0 then p = 0 end
  if pbad > 0 then
    trip()
  else
    ps = ps + pok
    if ps >= sth then close() end
  end
end
if ph == 1 and now >= u then
  ph, g, p, ps, t = 2, g + 1, 0, 0, now
end
local grant = 0
if ph == 2 then
  if p >= hmax and now - t >= oms then p = 0 end
  grant = hmax - p
  if want < grant then grant = want end
  if grant < 0 then grant = 0 end
  if grant > 0 then
    p = p + grant
    t = now
  end
end
redis.call('HSET', KEYS[1], 'ph', fmt(ph), 'g', fmt(g), 'u', fmt(u), 'w', fmt(w), 'c', fmt(c), 'f', fmt(f),
           'p', fmt(p), 'ps', fmt(ps), 't', fmt(t))
redis.call('PEXPIRE', KEYS[1], fmt(4 * (wms + oms) + 60000))
local left = 0
if ph == 1 then left = u - now end
return {ph, g, left, grant, redis.call('SCARD', KEYS[2])}
)lua";

// ---------------------------------------------------------------------------
// Window limiters (armor::redis_fixed_window, armor::redis_sliding_window;
// armor/redis/fixed_window.hpp, armor/redis/sliding_window.hpp).
//
// The rules of armor::fixed_window and armor::sliding_window, statement for
// statement, on counts and period indices only: a period (the fixed window,
// an exact window's segment, the approximation's window) of P ns has index
// i = floor((t - offset) / P) and the call is e ns into it (0 <= e < P).
// With caller time the C++ side computes i and e; with server time the
// script does, from Redis's TIME in microseconds (P and offset are then
// whole microseconds). The scripts decide and return counts and indices;
// the C++ side forms remaining, reset and retry_after from them with the
// memory limiters' own formulas. Numbers stay exact: P < 2^53 ns, limit <=
// 2^52, |i| < 2^53 (P >= 1 us), and the approximation's products prev * (P -
// e) and room * P (each up to 2^105) are compared in limbs of 2^24. Every
// state hash records the P (and segments) it was written for; a state of
// another shape counts as empty (and is replaced by the next grant).
//
// Every script: KEYS[1] the state hash. ARGV: server, i, e (caller time),
// P (ns), offset (us, server time), n, limit, then the script's own. Each
// returns {status (0 granted, 1 denied, 2 too large), i, e, ...}: the i and
// e it decided at (the caller's, or those it read from TIME).
inline constexpr std::string_view redis_lua_window_prelude = R"lua(
local server = ARGV[1] == '1'
local idx, e = tonumber(ARGV[2]), tonumber(ARGV[3])
local P = tonumber(ARGV[4])
local n, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
if server then
  local pu = P / 1000
  local l = server_now() - tonumber(ARGV[5])
  idx = fdiv(l, pu)
  e = (l - idx * pu) * 1000
end
-- Keeps the key for `ns` more (caller time: plus a minute of Redis's time,
-- which cannot follow the caller's clock).
local function keep(key, ns)
  local ms = math.ceil(ns / 1000000)
  if server then ms = ms + 1000 else ms = ms + 60000 end
  redis.call('PEXPIRE', key, fmt(ms))
end
)lua";

// window_fixed: fields p (P), i (the window counted), c (its count).
//   Returns {status, i, e, at (the window counted in: i, or a later one
//   another caller's clock reached), used (before this call)}.
inline constexpr std::string_view redis_lua_window_fixed = R"lua(
local h = redis.call('HMGET', KEYS[1], 'p', 'i', 'c')
local at, used = idx, 0
if tonumber(h[1]) == P then
  local i = tonumber(h[2])
  if i == idx then
    used = tonumber(h[3])
  elseif i > idx then
    at, used = i, tonumber(h[3])
  end
end
local st = 0
if n > limit then
  st = 2
elseif used + n > limit then
  st = 1
elseif n > 0 then
  redis.call('HSET', KEYS[1], 'p', fmt(P), 'i', fmt(at), 'c', fmt(used + n))
  keep(KEYS[1], (at + 1 - idx) * P - e)
end
return {st, idx, e, at, used}
)lua";

// window_exact: fields p (P), s (segments), h (the newest segment with a
// grant), and "<k>": segment k's count, for the `segments` segments up to h.
//   ARGV[8]: segments S.
//   Returns {status, i, e, now (i, or the later head), after (the count in
//   the window after this call), j (segments until all has rolled off), rj
//   (segments until the call fits; 0 when granted or too large)}.
inline constexpr std::string_view redis_lua_window_exact = R"lua(
local S = tonumber(ARGV[8])
local h = redis.call('HMGET', KEYS[1], 'p', 's', 'h')
local head = nil
if tonumber(h[1]) == P and tonumber(h[2]) == S then head = tonumber(h[3]) end
local now = idx
if head and head > now then now = head end
local first = now - S + 1
local cnt = {}
if head and head >= first then
  local f = {}
  for k = first, head do f[#f + 1] = fmt(k) end
  local v = redis.call('HMGET', KEYS[1], unpack(f))
  for j = 1, #f do cnt[first + j - 1] = tonumber(v[j]) or 0 end
end
local used = 0
for k = first, now do used = used + (cnt[k] or 0) end
local fits = n <= limit and used + n <= limit
local after = used
if fits then after = used + n end
local left, j, rj = after, 0, 0
local found = fits or n > limit
while (left > 0 or not found) and j < S do
  j = j + 1
  local k = first + j - 1
  local c = cnt[k] or 0
  if fits and k == now then c = c + n end
  left = left - c
  if j == S then left = 0 end
  if not found and left + n <= limit then
    found = true
    rj = j
  end
end
local st = 0
if n > limit then st = 2 elseif not fits then st = 1 end
if st == 0 and n > 0 then
  if not head then
    redis.call('DEL', KEYS[1])
  elseif now > head then
    local to = first - 1
    if to > head then to = head end
    for k = head - S + 1, to do redis.call('HDEL', KEYS[1], fmt(k)) end
  end
  redis.call('HSET', KEYS[1], 'p', fmt(P), 's', fmt(S), 'h', fmt(now), fmt(now), fmt((cnt[now] or 0) + n))
  keep(KEYS[1], (now + S - idx) * P - e)
end
return {st, idx, e, now, after, j, rj}
)lua";

// window_approx: fields p (P), h (the newest window with a grant), c (its
// count), q and r (the window before it and its count, kept when h moved
// on by one).
//   Returns {status, i, e, now (i, or the later head), prev, curr (before
//   this call)}. Granted iff n <= limit and prev * (P - e') + (curr + n) *
//   P <= limit * P, e' = e (0 when counted in a later window).
inline constexpr std::string_view redis_lua_window_approx = R"lua(
local B = 16777216
local function limbs(a)
  local a0 = a % B
  local r = (a - a0) / B
  local a1 = r % B
  return {a0, a1, (r - a1) / B}
end
local function mul(a, b)
  local x, y = limbs(a), limbs(b)
  local z = {0, 0, 0, 0, 0, 0}
  for i = 1, 3 do
    for j = 1, 3 do z[i + j - 1] = z[i + j - 1] + x[i] * y[j] end
  end
  for k = 1, 5 do
    local c = math.floor(z[k] / B)
    z[k] = z[k] - c * B
    z[k + 1] = z[k + 1] + c
  end
  return z
end
local function greater(a, b, c, d)
  local x, y = mul(a, b), mul(c, d)
  for k = 6, 1, -1 do
    if x[k] ~= y[k] then return x[k] > y[k] end
  end
  return false
end
local h = redis.call('HMGET', KEYS[1], 'p', 'h', 'c', 'q', 'r')
local head, cnt, q, r = nil, 0, nil, 0
if tonumber(h[1]) == P then
  head, cnt, q, r = tonumber(h[2]), tonumber(h[3]) or 0, tonumber(h[4]), tonumber(h[5]) or 0
end
local now = idx
if head and head > now then now = head end
local prev, curr = 0, 0
if head == now then
  curr = cnt
  if q == now - 1 then prev = r end
elseif head == now - 1 then
  prev = cnt
end
local ee = e
if now > idx then ee = 0 end
local st = 0
if n > limit then
  st = 2
elseif curr + n > limit or greater(prev, P - ee, limit - curr - n, P) then
  st = 1
elseif n > 0 then
  if head == now then
    redis.call('HSET', KEYS[1], 'c', fmt(curr + n))
  else
    redis.call('DEL', KEYS[1])
    if head == now - 1 then
      redis.call('HSET', KEYS[1], 'p', fmt(P), 'h', fmt(now), 'c', fmt(n), 'q', fmt(head), 'r', fmt(cnt))
    else
      redis.call('HSET', KEYS[1], 'p', fmt(P), 'h', fmt(now), 'c', fmt(n))
    end
  end
  keep(KEYS[1], (now + 2 - idx) * P - e)
end
return {st, idx, e, now, prev, curr}
)lua";

}  // namespace armor::detail
