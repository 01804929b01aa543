// armor/detail/redis_reply.hpp: armor's readers of the hiredis replies it
// interprets itself (the Lua scripts' answers, CLUSTER SLOTS, the MOVED, ASK
// and TRYAGAIN errors, Sentinel's primary address, ROLE, the shared
// breaker's sync). Each is a free function taking any `const
// redisReply*`: NULL, any type, any element count, any integer. It returns
// what the sender can have sent, within the bounds written beside each
// field, or nothing (the caller then treats Redis as not answering); it
// never reads outside the reply. tests/fuzz/fuzz_redis_reply.cpp feeds them
// whatever hiredis' reader makes of arbitrary bytes; the bounds come from
// the scripts (detail/redis_scripts.hpp).
#pragma once

#include <armor/detail/bucket_state.hpp>
#include <armor/detail/quota_word.hpp>
#include <armor/detail/redis_io.hpp>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace armor::detail {

/// The scripts' exact range: the most ticks burst * interval may span.
inline constexpr std::int64_t redis_bucket_max_span = std::int64_t{1} << 52;

/// Slices stay within +-2^53 (the scripts' exact range); so do the bucket
/// scripts' debts and lateness (redis_scripts.hpp, "Exactness").
inline constexpr std::int64_t redis_slice_max = std::int64_t{1} << 53;

/// The most windows a quota script serves (quota_max_windows, which
/// redis/quota_storage.hpp checks it against).
inline constexpr std::size_t redis_quota_windows = 8;

/// Element i of an array reply; nullptr for anything else.
[[nodiscard]] inline const redisReply* redis_element(const redisReply* r, std::size_t i) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->element == nullptr || i >= r->elements) return nullptr;
  return r->element[i];
}

/// An integer reply's value; nothing for anything else.
[[nodiscard]] inline std::optional<std::int64_t> redis_integer_of(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_INTEGER) return std::nullopt;
  return static_cast<std::int64_t>(r->integer);
}

/// The values of an array of exactly N integer replies.
template <std::size_t N>
[[nodiscard]] std::optional<std::array<std::int64_t, N>> redis_integers(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != N) return std::nullopt;
  std::array<std::int64_t, N> out{};
  for (std::size_t i = 0; i < N; ++i) {
    const std::optional<std::int64_t> v = redis_integer_of(redis_element(r, i));
    if (!v) return std::nullopt;
    out[i] = *v;
  }
  return out;
}

/// Whether `r` is an error reply whose text starts with `prefix`.
[[nodiscard]] inline bool redis_error_starts_with(const redisReply* r, std::string_view prefix) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ERROR || r->str == nullptr) return false;
  return std::string_view(r->str, r->len).starts_with(prefix);
}

/// A bucket config the scripts accept: c, p, b > 0 and b * p <= 2^52.
[[nodiscard]] constexpr bool redis_bucket_config_ok(const bucket_config& c) noexcept {
  return c.count > 0 && c.period > 0 && c.burst > 0 && c.burst <= redis_bucket_max_span / c.period;
}

/// What bucket_acquire answered for n tokens (a lease: up to want).
struct redis_bucket_answer {
  std::int64_t status = 0;   // 0 granted, 1 denied, 2 too large
  std::int64_t debt = 0;     // ticks, in [0, 2^53]
  std::int64_t late = 0;     // ticks, in [-2^53, 0] when granted, (0, 2^53] denied, 0 too large
  std::int64_t granted = 0;  // granted: in [n, max(n, want)], at most the burst; else 0
  bucket_config config{};    // redis_bucket_config_ok
  std::int64_t q = 0;        // granted: what the grant wrote (any value); else 0
  std::int64_t t = 0;        // granted: in [0, 2^53]; else 0
};

/// bucket_acquire's {status, debt, late, granted, c, p, b, q, t}.
[[nodiscard]] inline std::optional<redis_bucket_answer> redis_bucket_acquire_reply(const redisReply* r,
                                                                                   std::int64_t n,
                                                                                   std::int64_t want) noexcept {
  const auto v = redis_integers<9>(r);
  if (!v) return std::nullopt;
  const auto& x = *v;
  redis_bucket_answer a{x[0], x[1], x[2], x[3], bucket_config{x[4], x[5], x[6]}, x[7], x[8]};
  if (!redis_bucket_config_ok(a.config)) return std::nullopt;
  if (a.debt < 0 || a.debt > redis_slice_max) return std::nullopt;
  switch (a.status) {
    case 0:
      if (a.late > 0 || a.late < -redis_slice_max) return std::nullopt;
      if (a.granted < n || a.granted > std::max(n, want) || a.granted > a.config.burst) return std::nullopt;
      if (a.t < 0 || a.t > redis_slice_max) return std::nullopt;
      return a;
    case 1:
      if (a.late <= 0 || a.late > redis_slice_max) return std::nullopt;
      break;
    case 2:
      if (a.late != 0) return std::nullopt;
      break;
    default: return std::nullopt;
  }
  if (a.granted != 0 || a.q != 0 || a.t != 0) return std::nullopt;
  return a;
}

/// What bucket_configure answered: the config now (refused: the one asked
/// for, whose burst * interval exceeds 2^52 ticks).
struct redis_bucket_configure_answer {
  bool refused = false;
  bucket_config config{};  // c, p, b > 0; redis_bucket_config_ok unless refused
};

/// bucket_configure's {0 or 1, c, p, b}.
[[nodiscard]] inline std::optional<redis_bucket_configure_answer> redis_bucket_configure_reply(
    const redisReply* r) noexcept {
  const auto v = redis_integers<4>(r);
  if (!v) return std::nullopt;
  const auto& x = *v;
  const redis_bucket_configure_answer a{x[0] == 1, bucket_config{x[1], x[2], x[3]}};
  if (x[0] != 0 && x[0] != 1) return std::nullopt;
  if (a.config.count <= 0 || a.config.period <= 0 || a.config.burst <= 0) return std::nullopt;
  if (redis_bucket_config_ok(a.config) == a.refused) return std::nullopt;
  return a;
}

/// bucket_return's answer: whether the tokens went back (1); nothing for
/// anything but 0 or 1.
[[nodiscard]] inline std::optional<bool> redis_bucket_return_reply(const redisReply* r) noexcept {
  const std::optional<std::int64_t> v = redis_integer_of(r);
  if (!v || (*v != 0 && *v != 1)) return std::nullopt;
  return *v == 1;
}

/// What quota_consume answered for n units (a lease: up to want) in
/// `windows` windows.
struct redis_quota_answer {
  bool refused = false;
  std::size_t window = 0;    // refused: the full window, below `windows`; else 0
  std::int64_t granted = 0;  // consumed: with check, in [n, max(n, want)]; without, min(n, cap); else 0
  std::array<std::int64_t, redis_quota_windows> at{};    // slices, within +-2^53 (refused: at[window] only)
  std::array<std::int64_t, redis_quota_windows> used{};  // counts, in [0, quota_used_cap] (likewise)
};

/// quota_consume's {0, 0, granted, slice_1, used_1, ...} or {1, w, 0,
/// slice, used}.
[[nodiscard]] inline std::optional<redis_quota_answer> redis_quota_consume_reply(const redisReply* r,
                                                                                 std::size_t windows, std::int64_t n,
                                                                                 std::int64_t want,
                                                                                 bool check) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || windows == 0 || windows > redis_quota_windows) return std::nullopt;
  const auto at = [&](std::size_t i) { return redis_integer_of(redis_element(r, i)); };
  const auto slice_ok = [](std::int64_t s) { return s >= -redis_slice_max && s <= redis_slice_max; };
  const auto used_ok = [](std::int64_t u) { return u >= 0 && u <= quota_used_cap; };
  const std::optional<std::int64_t> flag = at(0);
  const std::optional<std::int64_t> second = at(1);
  const std::optional<std::int64_t> third = at(2);
  if (!flag || !second || !third) return std::nullopt;
  redis_quota_answer a;
  if (*flag == 1) {
    if (r->elements != 5 || *second < 0 || static_cast<std::uint64_t>(*second) >= windows || *third != 0) {
      return std::nullopt;
    }
    const std::optional<std::int64_t> s = at(3);
    const std::optional<std::int64_t> u = at(4);
    if (!s || !u || !slice_ok(*s) || !used_ok(*u)) return std::nullopt;
    a.refused = true;
    a.window = static_cast<std::size_t>(*second);
    a.at[a.window] = *s;
    a.used[a.window] = *u;
    return a;
  }
  if (*flag != 0 || *second != 0 || r->elements != 3 + 2 * windows) return std::nullopt;
  const std::int64_t g = *third;
  if (check ? g < n || g > std::max(n, want) : g != std::min(n, quota_used_cap)) return std::nullopt;
  a.granted = g;
  for (std::size_t i = 0; i < windows; ++i) {
    const std::optional<std::int64_t> s = at(3 + 2 * i);
    const std::optional<std::int64_t> u = at(4 + 2 * i);
    if (!s || !u || !slice_ok(*s) || !used_ok(*u)) return std::nullopt;
    a.at[i] = *s;
    a.used[i] = *u;
  }
  return a;
}

/// quota_read's {slice, count_0, ..., count_buckets} for a window of
/// `buckets` past buckets: the slice (within +-2^62: it echoes the caller's
/// index, which near the clock's ends may pass 2^53; the caller adds and
/// subtracts a bucket count to it); the counts (each in
/// [0, quota_used_cap]) go to `out`, as many as it holds. Nothing is written
/// to `out` unless the whole reply is right.
[[nodiscard]] inline std::optional<std::int64_t> redis_quota_read_reply(const redisReply* r, std::size_t buckets,
                                                                        std::span<std::int64_t> out) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || buckets >= r->elements || r->elements != buckets + 2) {
    return std::nullopt;
  }
  const std::optional<std::int64_t> slice = redis_integer_of(redis_element(r, 0));
  constexpr std::int64_t slice_max = std::int64_t{1} << 62;
  if (!slice || *slice < -slice_max || *slice > slice_max) return std::nullopt;
  for (std::size_t j = 1; j < r->elements; ++j) {
    const std::optional<std::int64_t> u = redis_integer_of(redis_element(r, j));
    if (!u || *u < 0 || *u > quota_used_cap) return std::nullopt;
  }
  const std::size_t k = std::min(out.size(), buckets + 1);
  for (std::size_t j = 0; j < k; ++j) out[j] = redis_element(r, j + 1)->integer;
  return slice;
}

/// quota_alert's answer: how many thresholds were recorded (never negative).
[[nodiscard]] inline std::optional<std::size_t> redis_quota_alert_reply(const redisReply* r) noexcept {
  const std::optional<std::int64_t> v = redis_integer_of(r);
  if (!v || *v < 0) return std::nullopt;
  return static_cast<std::size_t>(*v);
}

/// The port of "host:port" (after the last ':', in [1, 65535]); 0 if none.
[[nodiscard]] inline std::uint16_t redis_port_of(std::string_view s) noexcept {
  const std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return 0;
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(s.data() + colon + 1, s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v == 0 || v > 65535) return 0;
  return static_cast<std::uint16_t>(v);
}

/// One entry of a CLUSTER SLOTS reply: slots first..last (first <= last <
/// 16384) served by the primary at host:port (port in [1, 65535]; host
/// empty when the reply names none, or "?": the node asked). `host` points
/// into the reply.
struct redis_slot_range {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  std::string_view host;
  std::uint16_t port = 0;
};

/// Entry i of a CLUSTER SLOTS reply ({first, last, {host, port, ...},
/// replicas...}); nothing for an entry that is not one (the caller skips it).
[[nodiscard]] inline std::optional<redis_slot_range> redis_cluster_slots_entry(const redisReply* r,
                                                                               std::size_t i) noexcept {
  const redisReply* range = redis_element(r, i);
  if (range == nullptr || range->type != REDIS_REPLY_ARRAY || range->elements < 3) return std::nullopt;
  const redisReply* primary = redis_element(range, 2);
  if (primary == nullptr || primary->type != REDIS_REPLY_ARRAY || primary->elements < 2) return std::nullopt;
  const std::optional<std::int64_t> first = redis_integer_of(redis_element(range, 0));
  const std::optional<std::int64_t> last = redis_integer_of(redis_element(range, 1));
  const std::optional<std::int64_t> port = redis_integer_of(redis_element(primary, 1));
  if (!first || !last || !port) return std::nullopt;
  if (*first < 0 || *last < *first || *last >= std::int64_t{redis_slot_count} || *port <= 0 || *port > 65535) {
    return std::nullopt;
  }
  redis_slot_range out;
  out.first = static_cast<std::uint16_t>(*first);
  out.last = static_cast<std::uint16_t>(*last);
  out.port = static_cast<std::uint16_t>(*port);
  const redisReply* host = redis_element(primary, 0);
  if (host != nullptr && host->type == REDIS_REPLY_STRING && host->str != nullptr) {
    out.host = std::string_view(host->str, host->len);
  }
  if (out.host == "?") out.host = {};
  return out;
}

/// What an error reply asks a cluster client to do.
enum class redis_redirect_kind : std::uint8_t { none, moved, ask, try_again };

/// A redirect: moved and ask name a slot (below 16384) and a node (port in
/// [1, 65535]; host empty: the node asked; pointing into the reply);
/// none and try_again name nothing (slot and port 0, host empty).
struct redis_redirect {
  redis_redirect_kind kind = redis_redirect_kind::none;
  std::uint16_t slot = 0;
  std::string_view host;
  std::uint16_t port = 0;
};

/// What an error reply asks for: "MOVED <slot> <host>:<port>", "ASK <slot>
/// <host>:<port>", "TRYAGAIN ..."; none for any other reply.
[[nodiscard]] inline redis_redirect redis_redirect_of(const redisReply* r) noexcept {
  redis_redirect out;
  if (r == nullptr || r->type != REDIS_REPLY_ERROR || r->str == nullptr) return out;
  const std::string_view e(r->str, r->len);
  if (e.starts_with("TRYAGAIN")) {
    out.kind = redis_redirect_kind::try_again;
    return out;
  }
  std::string_view rest;
  if (e.starts_with("MOVED ")) {
    rest = e.substr(6);
  } else if (e.starts_with("ASK ")) {
    rest = e.substr(4);
  } else {
    return out;
  }
  unsigned slot = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), slot);
  if (ec != std::errc{} || slot >= redis_slot_count || end == rest.data() + rest.size() || *end != ' ') return out;
  const std::string_view where(end + 1, static_cast<std::size_t>(rest.data() + rest.size() - end - 1));
  const std::uint16_t port = redis_port_of(where);
  if (port == 0) return out;
  out.kind = e.front() == 'M' ? redis_redirect_kind::moved : redis_redirect_kind::ask;
  out.slot = static_cast<std::uint16_t>(slot);
  out.host = where.substr(0, where.rfind(':'));
  out.port = port;
  return out;
}

/// Sentinel's answer to `SENTINEL get-master-addr-by-name <name>`: the
/// primary's host (not empty, pointing into the reply) and port (1..65535);
/// nothing for a null reply (a name the sentinel does not monitor) or
/// anything else.
struct redis_sentinel_primary {
  std::string_view host;
  std::uint16_t port = 0;
};

[[nodiscard]] inline std::optional<redis_sentinel_primary> redis_sentinel_primary_reply(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return std::nullopt;
  const redisReply* h = redis_element(r, 0);
  const redisReply* p = redis_element(r, 1);
  if (h == nullptr || p == nullptr || h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING) {
    return std::nullopt;
  }
  if (h->str == nullptr || h->len == 0 || p->str == nullptr) return std::nullopt;
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(p->str, p->str + p->len, port);
  if (ec != std::errc{} || end != p->str + p->len || port == 0 || port > 65535) return std::nullopt;
  return redis_sentinel_primary{std::string_view(h->str, h->len), static_cast<std::uint16_t>(port)};
}

/// Whether a ROLE answer says "master" (an array whose first element is
/// that string); false for anything else.
[[nodiscard]] inline bool redis_role_is_primary(const redisReply* r) noexcept {
  const redisReply* first = redis_element(r, 0);
  if (first == nullptr || (first->type != REDIS_REPLY_STRING && first->type != REDIS_REPLY_STATUS)) return false;
  return first->str != nullptr && std::string_view(first->str, first->len) == "master";
}

/// What breaker_sync answered (redis_scripts.hpp): the shared breaker's
/// phase (0 closed, 1 open, 2 half-open), generation (>= 0), time left
/// open in milliseconds (0 unless open; at most 2^40, 34 years), probe slots
/// granted (0 to the `want` asked for) and reporting instances (>= 0).
struct redis_breaker_sync_answer {
  std::uint8_t phase = 0;
  std::uint64_t generation = 0;
  std::int64_t open_left_ms = 0;
  std::int64_t granted = 0;
  std::uint64_t reporters = 0;
};

[[nodiscard]] inline std::optional<redis_breaker_sync_answer> redis_breaker_sync_reply(const redisReply* r,
                                                                                      std::int64_t want) noexcept {
  const std::optional<std::array<std::int64_t, 5>> v = redis_integers<5>(r);
  if (!v) return std::nullopt;
  const auto [phase, generation, left, granted, reporters] = *v;
  if (phase < 0 || phase > 2 || generation < 0 || reporters < 0) return std::nullopt;
  if (left < 0 || left > (std::int64_t{1} << 40) || (phase != 1 && left != 0)) return std::nullopt;
  if (granted < 0 || granted > std::max<std::int64_t>(want, 0) || (phase != 2 && granted != 0)) return std::nullopt;
  return redis_breaker_sync_answer{static_cast<std::uint8_t>(phase), static_cast<std::uint64_t>(generation), left,
                                   granted, static_cast<std::uint64_t>(reporters)};
}

/// What a window script was asked (redis_scripts.hpp, "Window limiters"):
/// its units n (>= 0), limit, period P (ns), segments (exact; 1 otherwise)
/// and, with caller time, the index and offset it was sent.
struct redis_window_ask {
  redis_script script = redis_script::window_fixed;
  std::int64_t n = 0;
  std::int64_t limit = 1;
  std::int64_t period = 1;
  std::int64_t segments = 1;
  bool caller = true;
  std::int64_t index = 0;
  std::int64_t elapsed = 0;
};

/// What a window script answered: status (0 granted, 1 denied, 2 too
/// large), the period index i and the ns e into it it decided at, the
/// period `at` it counted in (i, or up to 2^53 / P periods later), and the
/// script's own numbers: fixed {used}, exact {after, j, rj}, approximate
/// {prev, curr}, each consistent with the status (the approximation's
/// inequality is checked again here, in 128 bits).
struct redis_window_answer {
  std::int64_t status = 0;
  std::int64_t index = 0;    // |i| <= 2^53; the caller's own with caller time
  std::int64_t elapsed = 0;  // in [0, P)
  std::int64_t at = 0;       // in [i, i + 2^53 / P]
  std::int64_t a = 0;        // fixed: used; exact: after; approximate: prev (each in [0, 2^53])
  std::int64_t b = 0;        // exact: j in [0, S]; approximate: curr in [0, 2^53]
  std::int64_t c = 0;        // exact: rj in [1, S] when denied, else 0
};

[[nodiscard]] inline std::optional<redis_window_answer> redis_window_reply(const redisReply* r,
                                                                           const redis_window_ask& q) noexcept {
  __extension__ typedef __int128 wide;
  redis_window_answer x;
  const auto in = [](std::int64_t v, std::int64_t lo, std::int64_t hi) { return v >= lo && v <= hi; };
  if (q.script == redis_script::window_exact) {
    const auto v = redis_integers<7>(r);
    if (!v) return std::nullopt;
    x = {(*v)[0], (*v)[1], (*v)[2], (*v)[3], (*v)[4], (*v)[5], (*v)[6]};
  } else {
    const auto v = redis_integers<5>(r);
    if (v) {
      x = {(*v)[0], (*v)[1], (*v)[2], (*v)[3], (*v)[4], 0, 0};
    } else if (const auto w = redis_integers<6>(r); w && q.script == redis_script::window_approx) {
      x = {(*w)[0], (*w)[1], (*w)[2], (*w)[3], (*w)[4], (*w)[5], 0};
    } else {
      return std::nullopt;
    }
    if ((q.script == redis_script::window_approx) != (r->elements == 6)) return std::nullopt;
  }
  if (q.n < 0 || q.limit < 1 || q.period < 1 || q.segments < 1) return std::nullopt;
  if (!in(x.status, 0, 2) || (x.status == 2) != (q.n > q.limit)) return std::nullopt;
  if (!in(x.index, -redis_slice_max, redis_slice_max) || !in(x.elapsed, 0, q.period - 1)) return std::nullopt;
  if (q.caller && (x.index != q.index || x.elapsed != q.elapsed)) return std::nullopt;
  if (!in(x.at, x.index, x.index + redis_slice_max / q.period)) return std::nullopt;
  if (!in(x.a, 0, redis_slice_max)) return std::nullopt;
  switch (q.script) {
    case redis_script::window_fixed:
      if (x.status == 0 && x.a + q.n > q.limit) return std::nullopt;
      if (x.status == 1 && x.a + q.n <= q.limit) return std::nullopt;
      return x;
    case redis_script::window_exact:
      if (!in(x.b, 0, q.segments)) return std::nullopt;
      if (x.status == 0 && (x.a < q.n || x.a > q.limit || x.c != 0)) return std::nullopt;
      if (x.status == 1 && (x.a + q.n <= q.limit || !in(x.c, 1, q.segments))) return std::nullopt;
      if (x.status == 2 && x.c != 0) return std::nullopt;
      return x;
    case redis_script::window_approx: {
      if (!in(x.b, 0, redis_slice_max)) return std::nullopt;
      if (x.status == 2) return x;
      const std::int64_t e = x.at > x.index ? 0 : x.elapsed;
      const bool fits = wide{x.a} * (q.period - e) + wide{x.b + q.n} * q.period <= wide{q.limit} * q.period;
      if ((x.status == 0) != fits) return std::nullopt;
      return x;
    }
    default: break;
  }
  return std::nullopt;
}

}  // namespace armor::detail
