// armor::token_bucket: exact GCRA decisions on a manual clock, reservations
// and their cancellation, runtime rate changes, the pipeline layer, the rate
// parser, option checks and the response-header helper.
#include <armor/deadline.hpp>
#include <armor/http/date.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

__extension__ typedef __int128 i128;

armor::timestamp at(std::int64_t ns) { return armor::timestamp{nanoseconds{ns}}; }
armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }

using bucket = armor::token_bucket<armor::manual_clock>;

/// The real-number definition of golang.org/x/time/rate's Limiter (tokens
/// and the time they were counted), kept exactly in integers: tokens are
/// counted in parts of 1/p token, so d ns of refill add exactly d*c parts.
/// Times must not go backwards. An independent formulation from the GCRA
/// state under test: no TAT, no base, no tags.
struct reference_bucket {
  std::int64_t c, p, b;
  i128 parts;  // tokens * p
  std::int64_t last;

  reference_bucket(armor::rate r, std::int64_t burst, std::int64_t now) { reset(r, burst, now, true); }

  void reset(armor::rate r, std::int64_t burst, std::int64_t now, bool full) {
    const std::int64_t per = r.per.count();
    const std::int64_t g = std::gcd(r.count, per);
    if (!full) parts = advanced(now);
    const std::int64_t old_p = full ? 1 : p;
    c = r.count / g;
    p = per / g;
    if (full) {
      parts = i128{burst} * p;
    } else {
      // SetLimit/SetBurst: keep the tokens, in the new parts (rounded down),
      // at most the new burst.
      const i128 scaled = parts * p;
      i128 q = scaled / old_p;
      if (scaled % old_p != 0 && scaled < 0) --q;
      parts = std::min(q, i128{burst} * p);
    }
    b = burst;
    last = now;
  }

  [[nodiscard]] i128 advanced(std::int64_t t) const {
    const i128 x = parts + i128(t - last) * c;
    return std::min(x, i128{b} * p);
  }

  struct answer {
    bool ok;
    std::int64_t remaining;
    std::int64_t retry_ns;
    std::int64_t reset_ns;
  };

  static std::int64_t ceil_div(i128 a, std::int64_t d) { return a <= 0 ? 0 : static_cast<std::int64_t>((a + d - 1) / d); }
  [[nodiscard]] std::int64_t whole(i128 x) const { return x <= 0 ? 0 : static_cast<std::int64_t>(x / p); }

  answer acquire(std::int64_t n, std::int64_t t) {
    const i128 x = advanced(t);
    const i128 full = i128{b} * p;
    if (n > b) return {false, whole(x), std::numeric_limits<std::int64_t>::max(), ceil_div(full - x, c)};
    const i128 need = i128{n} * p;
    if (x >= need) {
      parts = x - need;
      last = t;
      return {true, whole(parts), 0, ceil_div(full - parts, c)};
    }
    return {false, whole(x), ceil_div(need - x, c), ceil_div(full - x, c)};
  }
};

void check_same(const armor::token_bucket_decision<>& d, const reference_bucket::answer& a) {
  CHECK(d.allowed() == a.ok);
  CHECK(d.remaining() == a.remaining);
  CHECK(d.retry_after().count() == a.retry_ns);
  CHECK(d.reset().count() == a.reset_ns);
}

/// Rates whose interval is and is not a whole number of nanoseconds, and
/// one with a huge reduced count (re-based every 0.14 s of clock time).
const std::vector<armor::rate>& sample_rates() {
  static const std::vector<armor::rate> rates{
      {100, 1s}, {3, 1s}, {7, 1min}, {5000, 1h}, {12345, 1s}, {999'999'937, 1s}, {1, 1ns}, {2, 3ns},
  };
  return rates;
}

}  // namespace

// ---------------------------------------------------------------------------
// Exact decisions

TEST_CASE("the bucket starts full: burst tokens at once, then one per interval") {
  armor::manual_clock clock;
  bucket b{{.rate = {10, 1s}, .burst = 3}, clock};
  CHECK(b.try_acquire());
  CHECK(b.try_acquire());
  CHECK(b.try_acquire());
  const auto d = b.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.status() == armor::token_bucket_status::denied);
  CHECK(d.retry_after() == 100ms);

  clock.advance(100ms - 1ns);
  CHECK_FALSE(b.try_acquire());  // one nanosecond early
  clock.advance(1ns);
  CHECK(b.try_acquire());  // exactly on time
  CHECK_FALSE(b.try_acquire());
}

TEST_CASE("a non-integral interval is exact: 3 per second is due at 333333334, 666666667 and 1e9 ns") {
  bucket b{{.rate = {3, 1s}, .burst = 2}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(2, at(0)));
  // While the bucket is not full, token k is due at the first whole
  // nanosecond >= k * 1e9 / 3: fractions carry over exactly.
  const std::int64_t due[] = {333'333'334, 666'666'667, 1'000'000'000, 1'333'333'334, 1'666'666'667, 2'000'000'000};
  for (std::int64_t t : due) {
    INFO("due at " << t);
    const auto early = b.try_acquire(1, at(t - 1));
    CHECK_FALSE(early);
    CHECK(early.retry_after() == 1ns);
    CHECK(b.try_acquire(1, at(t)));
  }

  SECTION("a bucket that fills up loses the refill beyond its burst, as in x/time/rate") {
    bucket one{{.rate = {3, 1s}, .burst = 1}, armor::manual_clock{}};
    REQUIRE(one.try_acquire(1, at(0)));
    // Full again at 333333333.33 ns; taken at 333333334, the next token
    // counts from there: due at 666666667.33, so at 666666668.
    REQUIRE(one.try_acquire(1, at(333'333'334)));
    CHECK_FALSE(one.try_acquire(1, at(666'666'667)));
    CHECK(one.try_acquire(1, at(666'666'668)));
  }
}

TEST_CASE("over a long run exactly burst + floor(rate * t) tokens are admitted") {
  SECTION("3 per second, burst 5, taken one by one every millisecond for 100 s") {
    bucket b{{.rate = {3, 1s}, .burst = 5}, armor::manual_clock{}};
    std::int64_t admitted = 0;
    for (std::int64_t ms = 0; ms <= 100'000; ++ms) {
      const std::int64_t t = ms * 1'000'000;
      while (b.try_acquire(1, at(t))) ++admitted;
      if (admitted != 5 + (3 * t) / 1'000'000'000) {
        FAIL("at " << t << " ns admitted " << admitted);
      }
    }
    CHECK(admitted == 5 + 300);
  }
  SECTION("7 per minute, burst 2, for a day") {
    bucket b{{.rate = {7, 1min}, .burst = 2}, armor::manual_clock{}};
    std::int64_t admitted = 0;
    for (std::int64_t s = 0; s <= 86'400; ++s) {
      const std::int64_t t = s * 1'000'000'000;
      while (b.try_acquire(1, at(t))) ++admitted;
      if (admitted != 2 + (7 * i128{t}) / 60'000'000'000) FAIL("at " << t << " ns admitted " << admitted);
    }
    CHECK(admitted == 2 + 7 * 24 * 60);
  }
  SECTION("999999937 per second, drained every millisecond for 10 s (many re-bases)") {
    // The burst is larger than a millisecond's refill, so the bucket never
    // fills and no refill is capped away.
    constexpr std::int64_t burst = 2'000'000;
    bucket b{{.rate = {999'999'937, 1s}, .burst = burst}, armor::manual_clock{}};
    std::int64_t admitted = 0;
    for (std::int64_t ms = 0; ms <= 10'000; ++ms) {
      const std::int64_t t = ms * 1'000'000;
      const std::int64_t n = b.available(at(t));
      REQUIRE(b.try_acquire(n, at(t)));
      admitted += n;
      CHECK_FALSE(b.try_acquire(1, at(t)));
      const std::int64_t expected = burst + static_cast<std::int64_t>((i128{999'999'937} * t) / 1'000'000'000);
      if (admitted != expected) FAIL("at " << t << " ns admitted " << admitted << ", expected " << expected);
    }
  }
}

TEST_CASE("a request is all or nothing, and a denial writes nothing") {
  bucket b{{.rate = {1, 1s}, .burst = 5}, armor::manual_clock{}};
  bucket twin{{.rate = {1, 1s}, .burst = 5}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(3, at(0)));
  REQUIRE(twin.try_acquire(3, at(0)));
  const auto d = b.try_acquire(3, at(0));  // only 2 left
  CHECK_FALSE(d);
  CHECK(d.remaining() == 2);
  CHECK(d.retry_after() == 1s);
  for (int i = 0; i < 100; ++i) (void)b.try_acquire(5, at(i));  // more denials
  // The denied bucket behaves exactly like one that was never asked.
  for (std::int64_t t : {0LL, 500'000'000LL, 999'999'999LL, 1'000'000'000LL, 1'000'000'001LL, 4'000'000'000LL}) {
    for (std::int64_t n : {1, 2, 3}) {
      const auto x = b.try_acquire(n, at(t));
      const auto y = twin.try_acquire(n, at(t));
      CHECK(x.allowed() == y.allowed());
      CHECK(x.remaining() == y.remaining());
    }
  }
}

TEST_CASE("a request larger than the burst fails at once, and n = 0 always succeeds") {
  bucket b{{.rate = {1, 1s}, .burst = 4}, armor::manual_clock{}};
  const auto d = b.try_acquire(5, at(0));
  CHECK(d.status() == armor::token_bucket_status::too_large);
  CHECK(d.retry_after() == nanoseconds::max());
  CHECK(d.remaining() == 4);  // nothing taken
  CHECK(b.try_acquire(4, at(0)));
  const auto zero = b.try_acquire(0, at(0));
  CHECK(zero.allowed());
  CHECK(zero.remaining() == 0);
  const auto neg = b.try_acquire(-1, at(0));
  CHECK(neg.status() == armor::token_bucket_status::invalid);
  CHECK_FALSE(neg);
  // Behind a reservation the bucket is below zero: 0 tokens are not there
  // either (AllowN(t, 0) in x/time/rate), but a free pipeline call passes.
  auto r = b.reserve(2, 10s, at(0));
  REQUIRE(r);
  r.permit().commit();
  CHECK_FALSE(b.try_acquire(0, at(0)));
  armor::context ctx(at(0), {.cost = 0});
  CHECK(b.admit(ctx).kind == armor::admission_kind::admitted);
}

TEST_CASE("a decision has the shape of every armor decision: bool, code() per status, retry_after()") {
  using decision = armor::token_bucket_decision<>;
  using reservation = armor::token_bucket_decision<armor::token_bucket_permit>;
  static_assert(armor::decision_like<decision>);
  static_assert(armor::decision_like<reservation>);
  static_assert(!std::is_convertible_v<decision, bool>);
  static_assert(!std::is_convertible_v<reservation, bool>);
  static_assert(std::is_nothrow_copy_constructible_v<decision>);
  static_assert(!std::is_copy_constructible_v<reservation>);
  static_assert(std::is_nothrow_move_constructible_v<reservation>);
  static_assert(std::is_same_v<decltype(std::declval<bucket&>().try_acquire()), decision>);
  static_assert(std::is_same_v<decltype(std::declval<bucket&>().reserve(1, 1s)), reservation>);
  static_assert(std::is_same_v<decltype(std::declval<reservation&>().permit()), armor::token_bucket_permit&>);
  static_assert(
      std::is_same_v<decltype(std::declval<const reservation&>().permit()), const armor::token_bucket_permit&>);
  static_assert(std::is_same_v<decltype(std::declval<reservation>().permit()), armor::token_bucket_permit>);  // by value: no dangling reference
  bucket b{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};

  const auto granted = b.try_acquire(2, at(0));
  CHECK(granted);
  CHECK(granted.status() == armor::token_bucket_status::granted);
  CHECK_FALSE(granted.code());
  CHECK(granted.code() == std::error_code{});
  CHECK(granted.retry_after() == 0ns);

  const auto denied = b.try_acquire(1, at(250ms));
  CHECK_FALSE(denied);
  CHECK(denied.status() == armor::token_bucket_status::denied);
  CHECK(denied.code() == armor::errc::rate_limited);
  CHECK(denied.retry_after() == 750ms);

  const auto too_large = b.try_acquire(3, at(0));
  CHECK_FALSE(too_large);
  CHECK(too_large.status() == armor::token_bucket_status::too_large);
  CHECK(too_large.code() == armor::errc::request_too_large);
  CHECK(too_large.retry_after() == nanoseconds::max());  // no wait can grant it

  const auto invalid = b.try_acquire(-1, at(0));
  CHECK_FALSE(invalid);
  CHECK(invalid.status() == armor::token_bucket_status::invalid);
  CHECK(invalid.code() == armor::errc::invalid_argument);
  CHECK(invalid.retry_after() == nanoseconds::max());

  SECTION("another bucket implementation may deny for its own reason (Redis away)") {
    const armor::detail::bucket_config one_per_second{1, 1'000'000'000, 2};
    const auto away =
        armor::detail::bucket_decision_access::refused(armor::errc::storage_unavailable, one_per_second, 1);
    CHECK_FALSE(away);
    CHECK(away.status() == armor::token_bucket_status::denied);
    CHECK(away.code() == armor::errc::storage_unavailable);
    CHECK(away.retry_after() == 0ns);
    CHECK(away.remaining() == 2);
  }
  SECTION("a reservation's decision is granted, with the wait apart from retry_after") {
    auto r = b.reserve(1, 5s, at(250ms));
    REQUIRE(r);
    CHECK_FALSE(r.code());
    CHECK(r.retry_after() == 0ns);
    CHECK(r.wait() == 750ms);
    r.permit().commit();
    const auto refused = b.reserve(1, 1s, at(250ms));
    CHECK_FALSE(refused);
    CHECK(refused.code() == armor::errc::rate_limited);
    CHECK(refused.retry_after() == 1750ms);
    CHECK_FALSE(refused.permit());
  }
}

TEST_CASE("to_string names every token_bucket_status") {
  static_assert(armor::to_string(armor::token_bucket_status::granted) == "granted");
  CHECK(armor::to_string(armor::token_bucket_status::granted) == "granted");
  CHECK(armor::to_string(armor::token_bucket_status::denied) == "denied");
  CHECK(armor::to_string(armor::token_bucket_status::too_large) == "too_large");
  CHECK(armor::to_string(armor::token_bucket_status::invalid) == "invalid");
}

TEST_CASE("decision numbers: remaining, reset and retry_after are exact") {
  bucket b{{.rate = {2, 1s}, .burst = 4}, armor::manual_clock{}};  // one token per 500 ms
  auto d = b.try_acquire(1, at(0));
  CHECK(d.limit() == 4);
  CHECK(d.requested() == 1);
  CHECK(d.remaining() == 3);
  CHECK(d.reset() == 500ms);
  CHECK(d.retry_after() == 0ns);
  CHECK(d.wait() == 0ns);
  d = b.try_acquire(3, at(100ms));  // 3.2 tokens there
  CHECK(d.allowed());
  CHECK(d.remaining() == 0);
  CHECK(d.reset() == 1900ms);  // 3.8 tokens short of full
  d = b.try_acquire(2, at(300ms));  // 0.6 tokens there
  CHECK_FALSE(d);
  CHECK(d.remaining() == 0);
  CHECK(d.retry_after() == 700ms);  // 1.4 tokens short
  CHECK(d.reset() == 1700ms);
  CHECK(b.available(at(2s)) == 4);
  CHECK(b.available(at(900ms)) == 1);  // 0.2 + 1.6 tokens
  CHECK(b.available(at(1s)) == 2);
}

TEST_CASE("decisions equal the exact real-number definition on random sequences") {
  std::mt19937_64 rng(20240605);
  for (const armor::rate& r : sample_rates()) {
    for (std::int64_t burst : {1, 3, 50}) {
      CAPTURE(r.count, r.per.count(), burst);
      const std::int64_t start = 1'000'000'007;
      bucket b{{.rate = r, .burst = burst}, armor::manual_clock{nanoseconds{start}}};
      reference_bucket ref(r, burst, start);
      const std::int64_t interval = std::max<std::int64_t>(r.per.count() / r.count, 1);
      std::int64_t t = start;
      for (int i = 0; i < 3000; ++i) {
        // Mostly steps around the interval (the boundaries), sometimes long idles.
        const auto kind = rng() % 10;
        if (kind < 6) {
          t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(2 * interval + 1));
        } else if (kind < 9) {
          t += static_cast<std::int64_t>(rng() % 3);
        } else {
          t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::min<std::int64_t>(interval * 200, 1'000'000'000'000)));
        }
        const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(burst + 2));
        INFO("step " << i << " t=" << t << " n=" << n);
        check_same(b.try_acquire(n, at(t)), ref.acquire(n, t));
      }
    }
  }
}

TEST_CASE("re-basing keeps decisions exact far from the start") {
  // The state is relative to a base that moves when ticks would overflow:
  // every 2^57 / count ns. Drive buckets across many such moves, starting at
  // a wall-clock-sized epoch.
  std::mt19937_64 rng(7);
  const std::int64_t epoch = 1'717'000'000'000'000'000;  // 2024 in Unix ns
  for (const armor::rate& r : {armor::rate{999'999'937, 1s}, armor::rate{12345, 1s}, armor::rate{1, 1ns}}) {
    CAPTURE(r.count);
    bucket b{{.rate = r, .burst = 10}, armor::manual_clock{nanoseconds{epoch}}};
    reference_bucket ref(r, 10, epoch);
    std::int64_t t = epoch;
    const std::int64_t rebase_every = (std::int64_t{1} << 57) / (r.count / std::gcd(r.count, r.per.count()));
    for (int i = 0; i < 2000; ++i) {
      t += (i % 50 == 0) ? rebase_every + static_cast<std::int64_t>(rng() % 1000)
                         : static_cast<std::int64_t>(rng() % 5000);
      const std::int64_t n = static_cast<std::int64_t>(rng() % 4);
      INFO("step " << i);
      check_same(b.try_acquire(n, at(t)), ref.acquire(n, t));
    }
  }
}

TEST_CASE("a call with a time before the bucket's start is judged conservatively") {
  bucket b{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{nanoseconds{10'000'000'000}}};
  // Built at t = 10 s; a reading from 3 s is older than the base: it still
  // sees a full bucket (the bucket starts full "since forever").
  CHECK(b.try_acquire(2, at(3s)));
  CHECK_FALSE(b.try_acquire(1, at(3s)));
  CHECK(b.try_acquire(1, at(4s)));
}

// ---------------------------------------------------------------------------
// Reservations

TEST_CASE("reservations are served in arrival order, each at its exact time") {
  bucket b{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(2, at(0)));
  auto r1 = b.reserve(1, 10s, at(0));
  auto r2 = b.reserve(2, 10s, at(0));
  auto r3 = b.reserve(1, 10s, at(100ms));
  REQUIRE(r1);
  REQUIRE(r2);
  REQUIRE(r3);
  CHECK(r1.wait() == 1s);
  CHECK(r2.wait() == 3s);
  CHECK(r3.wait() == 3900ms);  // due at 4 s
  CHECK(r1.remaining() == 0);
  // Nobody can jump the queue: an immediate request at 1 s finds nothing.
  CHECK_FALSE(b.try_acquire(1, at(1s)));
  CHECK(b.try_acquire(1, at(5s)));
  // A reservation longer than allowed is refused and reserves nothing.
  const auto no = b.reserve(1, 999ms, at(5s));
  CHECK_FALSE(no);
  CHECK(no.retry_after() == 1s);
  CHECK(b.try_acquire(1, at(6s)));
  r1.permit().commit();
  r2.permit().commit();
  r3.permit().commit();
}

TEST_CASE("an abandoned reservation gives its tokens back when nothing was taken after it") {
  bucket b{{.rate = {1, 1s}, .burst = 1}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(1, at(0)));
  {
    auto r = b.reserve(1, 5s, at(0));
    REQUIRE(r);
    CHECK(r.wait() == 1s);
  }  // dropped uncommitted: the bucket is as if it had never been made
  auto again = b.reserve(1, 5s, at(0));
  CHECK(again.wait() == 1s);
  CHECK(again.permit().cancel());
  CHECK_FALSE(again.permit().cancel());  // only once
  CHECK(b.try_acquire(1, at(1s)));
}

TEST_CASE("a reservation's permit is taken out of its decision, which then holds nothing") {
  bucket b{{.rate = {1, 1s}, .burst = 1}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(1, at(0)));
  {
    auto d = b.reserve(1, 5s, at(0));
    REQUIRE(d);
    CHECK(d.permit());
    armor::token_bucket_permit p = std::move(d).permit();
    CHECK(p);
    CHECK_FALSE(d.permit());  // NOLINT(bugprone-use-after-move): moved from, empty
    CHECK(d);                 // still the answer it was
    CHECK(d.wait() == 1s);
  }  // the permit, dropped uncommitted, gave the token back
  CHECK(b.available(at(1s)) == 1);
  {
    auto d = b.reserve(1, 5s, at(0));
    armor::token_bucket_permit p = std::move(d).permit();
    p.commit();
  }  // committed: kept
  CHECK(b.available(at(1s)) == 0);
  CHECK(b.available(at(2s)) == 1);
  // A refused reservation, and a granted one of 0 tokens, hold nothing.
  CHECK_FALSE(b.reserve(1, 0s, at(1s)).permit());
  const auto zero = b.reserve(0, 0s, at(2s));
  CHECK(zero);
  CHECK_FALSE(zero.permit());
  CHECK(b.reserve(-1, 5s, at(2s)).status() == armor::token_bucket_status::invalid);
}

TEST_CASE("a reservation followed by others is not given back, so promised times stay valid") {
  bucket b{{.rate = {1, 10ns}, .burst = 2}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(2, at(0)));
  auto r1 = b.reserve(2, 1s, at(0));  // due at 20 ns
  auto r2 = b.reserve(1, 1s, at(0));  // due at 30 ns
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(r1.wait() == 20ns);
  CHECK(r2.wait() == 30ns);
  CHECK_FALSE(r1.permit().cancel());  // r2 came after: nothing is given back
  // r2 runs at 30 ns as promised; the next token after it is due at 40 ns.
  r2.permit().commit();
  CHECK_FALSE(b.try_acquire(1, at(39)));
  CHECK(b.try_acquire(1, at(40)));
}

TEST_CASE("a grant given back after later grants were given back is still returned") {
  bucket b{{.rate = {1, 1s}, .burst = 3}, armor::manual_clock{}};
  auto a = b.reserve(1, 0s, at(0));
  auto c = b.reserve(1, 0s, at(0));
  REQUIRE(a);
  REQUIRE(c);
  CHECK_FALSE(a.permit().cancel());  // c is later
  bucket b2{{.rate = {1, 1s}, .burst = 3}, armor::manual_clock{}};
  auto a2 = b2.reserve(1, 0s, at(0));
  auto c2 = b2.reserve(1, 0s, at(0));
  CHECK(c2.permit().cancel());  // the last one first
  CHECK(a2.permit().cancel());  // then this one is the last
  CHECK(b2.available(at(0)) == 3);
  c.permit().commit();
}

TEST_CASE("a rate change between a grant and its cancellation forfeits the give-back") {
  bucket b{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
  auto r = b.reserve(1, 0s, at(0));
  REQUIRE(r);
  b.set_rate({2, 1s}, 2, at(0));
  CHECK_FALSE(r.permit().cancel());
  CHECK(b.available(at(0)) == 1);
}

TEST_CASE("after a rate change, grants, give-backs and moves work as before it, and an unchanged rate changes nothing") {
  // The first change moves the state from its 8-byte word to the
  // generation-checked pair; everything must read the same afterwards.
  bucket b{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
  b.set_rate({1, 1s}, 2, at(0));  // the same config: nothing to do
  CHECK(b.idle(at(0)));
  b.set_rate({1, 1s}, 3, at(0));  // keeps the two tokens it holds
  CHECK_FALSE(b.idle(at(0)));
  CHECK(b.available(at(0)) == 2);
  REQUIRE(b.try_acquire(2, at(0)));
  auto r = b.reserve(1, 2s, at(0));
  REQUIRE(r);
  CHECK(r.wait() == 1s);
  CHECK(r.permit().cancel());  // the last grant since the change: given back
  CHECK(b.available(at(1s)) == 1);
  bucket moved{std::move(b)};
  CHECK(moved.rate() == armor::rate{1, 1s});
  CHECK(moved.burst() == 3);
  CHECK(moved.available(at(1s)) == 1);
  CHECK(moved.try_acquire(1, at(1s)));
  CHECK_FALSE(moved.try_acquire(1, at(1s)));
  const auto d = moved.try_acquire(1, at(1500ms));
  CHECK_FALSE(d);
  CHECK(d.retry_after() == 500ms);
  moved.set_rate({1, 500ms}, at(2s));  // and again: tokens kept, new interval
  CHECK(moved.available(at(2s)) == 1);
  CHECK(moved.try_acquire(2, at(2500ms)));
}

// ---------------------------------------------------------------------------
// Runtime rate changes

TEST_CASE("set_rate keeps the tokens, whole and fractional") {
  bucket b{{.rate = {1, 1s}, .burst = 10}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(10, at(0)));
  // Half a token accrues at the old rate...
  b.set_rate({2, 1s}, 10, at(500ms));
  CHECK(b.rate() == armor::rate{2, 1s});
  // ...and is kept: at 2/s the other half takes 250 ms, not 500 ms.
  CHECK_FALSE(b.try_acquire(1, at(750ms - 1ns)));
  CHECK(b.try_acquire(1, at(750ms)));

  SECTION("whole tokens are kept exactly") {
    bucket c{{.rate = {1, 1s}, .burst = 10}, armor::manual_clock{}};
    REQUIRE(c.try_acquire(6, at(0)));
    c.set_rate({1, 1min}, 10, at(0));
    CHECK(c.available(at(0)) == 4);
    CHECK(c.available(at(59s)) == 4);
    CHECK(c.available(at(60s)) == 5);
  }
  SECTION("a smaller burst drops tokens above it") {
    bucket c{{.rate = {1, 1s}, .burst = 10}, armor::manual_clock{}};
    c.set_rate({1, 1s}, 3, at(0));
    CHECK(c.burst() == 3);
    CHECK(c.available(at(0)) == 3);
    CHECK(c.try_acquire(3, at(0)));
    CHECK_FALSE(c.try_acquire(1, at(0)));
  }
  SECTION("a larger burst adds no tokens: they refill at the rate") {
    bucket c{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
    c.set_rate({1, 1s}, 5, at(0));
    CHECK(c.available(at(0)) == 2);
    CHECK(c.available(at(3s)) == 5);
  }
  SECTION("debt from reservations is kept") {
    bucket c{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
    REQUIRE(c.try_acquire(2, at(0)));
    auto r = c.reserve(2, 10s, at(0));  // tokens are now -2
    REQUIRE(r);
    r.permit().commit();
    c.set_rate({2, 1s}, 2, at(0));  // 4 tokens short of full at 2/s: 2 s
    CHECK(c.available(at(1999ms)) == 1);
    CHECK(c.available(at(2s)) == 2);
  }
  SECTION("set_burst and set_rate(rate) change one thing") {
    armor::manual_clock clock;
    bucket c{{.rate = {1, 1s}, .burst = 2}, clock};
    c.set_burst(4);
    CHECK(c.burst() == 4);
    CHECK(c.rate() == armor::rate{1, 1s});
    c.set_rate({60, 1min});  // the same rate: nothing changes
    CHECK(c.rate() == armor::rate{1, 1s});
    c.set_rate({3, 1s});
    CHECK(c.burst() == 4);
    CHECK(c.rate() == armor::rate{3, 1s});
  }
  SECTION("bad values are refused and change nothing") {
    bucket c{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
    CHECK_THROWS_AS(c.set_rate({0, 1s}, 2, at(0)), armor::error);
    CHECK_THROWS_AS(c.set_rate({1, 1s}, 0, at(0)), armor::error);
    CHECK(c.rate() == armor::rate{1, 1s});
    CHECK(c.burst() == 2);
  }
}

TEST_CASE("rate changes on random sequences match the exact definition") {
  std::mt19937_64 rng(99);
  const auto& rates = sample_rates();
  for (int round = 0; round < 20; ++round) {
    const std::int64_t start = 5'000'000'000;
    armor::rate r = rates[rng() % rates.size()];
    std::int64_t burst = 1 + static_cast<std::int64_t>(rng() % 20);
    bucket b{{.rate = r, .burst = burst}, armor::manual_clock{nanoseconds{start}}};
    reference_bucket ref(r, burst, start);
    std::int64_t t = start;
    for (int i = 0; i < 1500; ++i) {
      const std::int64_t interval = std::max<std::int64_t>(ref.p / ref.c, 1);
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(3 * interval + 1));
      if (rng() % 40 == 0) {
        r = rates[rng() % rates.size()];
        burst = 1 + static_cast<std::int64_t>(rng() % 20);
        b.set_rate(r, burst, at(t));
        ref.reset(r, burst, t, false);
        continue;
      }
      const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(burst + 1));
      INFO("round " << round << " step " << i << " t=" << t << " n=" << n);
      check_same(b.try_acquire(n, at(t)), ref.acquire(n, t));
    }
  }
}

// ---------------------------------------------------------------------------
// idle(): what armor::keyed evicts first

TEST_CASE("idle means full again, and a rate changed at runtime is never idle") {
  bucket b{{.rate = {1, 1s}, .burst = 2}, armor::manual_clock{}};
  CHECK(b.idle(at(0)));
  REQUIRE(b.try_acquire(1, at(0)));
  CHECK_FALSE(b.idle(at(999'999'999)));
  CHECK(b.idle(at(1s)));
  b.set_rate({2, 1s}, 2, at(1s));
  CHECK_FALSE(b.idle(at(10s)));
}

TEST_CASE("dropping an idle bucket cannot change any decision: a fresh one decides alike") {
  // For any history that leaves a bucket idle at t0, and any requests at or
  // after t0, the bucket and a fresh bucket made at t0 from the same options
  // answer every request identically.
  std::mt19937_64 rng(314159);
  for (int round = 0; round < 200; ++round) {
    const armor::rate r = sample_rates()[rng() % sample_rates().size()];
    const std::int64_t burst = 1 + static_cast<std::int64_t>(rng() % 8);
    const std::int64_t interval = std::max<std::int64_t>(r.per.count() / r.count, 1);
    bucket used{{.rate = r, .burst = burst}, armor::manual_clock{}};
    std::int64_t t = 0;
    for (int i = 0; i < 50; ++i) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval + 1));
      if (rng() % 3 == 0) {
        auto res = used.reserve(1 + static_cast<std::int64_t>(rng() % burst), nanoseconds{interval * 4}, at(t));
        res.permit().commit();
      } else {
        (void)used.try_acquire(static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(burst + 1)), at(t));
      }
    }
    // Wait until idle (at most burst + 4 reserved intervals of debt), plus a random extra.
    while (!used.idle(at(t))) t += interval;
    t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval * 3));
    REQUIRE(used.idle(at(t)));
    bucket fresh{{.rate = r, .burst = burst}, armor::manual_clock{nanoseconds{t}}};
    for (int i = 0; i < 100; ++i) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval + 2));
      const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(burst + 2));
      const auto x = used.try_acquire(n, at(t));
      const auto y = fresh.try_acquire(n, at(t));
      INFO("round " << round << " step " << i);
      REQUIRE(x.status() == y.status());
      REQUIRE(x.remaining() == y.remaining());
      REQUIRE(x.retry_after() == y.retry_after());
      REQUIRE(x.reset() == y.reset());
    }
  }
}

// ---------------------------------------------------------------------------
// In a pipeline

TEST_CASE("in a pipeline a call without tokens is rejected with rate_limited and the exact retry_after") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::token_bucket{{.rate = {2, 1s}, .burst = 1}, clock}};
  int calls = 0;
  auto op = [&] { return ++calls; };
  REQUIRE(p.try_execute(op).has_value());
  clock.advance(100ms);
  auto r = p.try_execute(op);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  REQUIRE(r.retry_after().has_value());
  CHECK(*r.retry_after() == 400ms);
  CHECK(calls == 1);
  try {
    (void)p.execute(op);
    FAIL("execute should throw");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::rate_limited);
    CHECK(e.retry_after() == std::optional<nanoseconds>{400ms});
  }
  clock.advance(400ms);
  CHECK(p.try_execute(op).has_value());
}

TEST_CASE("in a pipeline a call costs call_options::cost tokens") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::token_bucket{{.rate = {1, 1s}, .burst = 5}, clock}};
  auto op = [] { return 0; };
  CHECK(p.try_execute(op, {.cost = 3}).has_value());
  CHECK(p.try_execute(op, {.cost = 2}).has_value());
  CHECK_FALSE(p.try_execute(op, {.cost = 1}).has_value());
  CHECK(p.try_execute(op, {.cost = 0}).has_value());  // free

  SECTION("a cost above the burst fails at once, not retryable") {
    auto r = p.try_execute(op, {.cost = 6});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::request_too_large);
    CHECK_FALSE(r.retry_after().has_value());
  }
  SECTION("a negative cost is invalid") {
    auto r = p.try_execute(op, {.cost = -1});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::invalid_argument);
  }
}

TEST_CASE("a bucket's cost option picks which of the call's costs it takes as tokens") {
  armor::manual_clock clock;
  auto op = [] { return 0; };
  SECTION("per_call: one token a call, whatever the call costs (a request rate beside a dollar quota)") {
    auto p = armor::pipeline{clock, armor::token_bucket{{.rate = {1, 1s}, .burst = 2, .cost = armor::cost_source::per_call()}, clock}};
    CHECK(p.try_execute(op, {.cost = 40'000}).has_value());  // far above the burst: not this bucket's cost
    CHECK(p.try_execute(op, {.cost = 0}).has_value());
    auto r = p.try_execute(op, {.cost = 40'000});
    CHECK(r.code() == armor::errc::rate_limited);
    CHECK(r.retry_after() == std::optional<nanoseconds>{1s});
  }
  SECTION("slot(i): call_options::costs[i], here LLM tokens a minute") {
    auto p = armor::pipeline{
        clock, armor::token_bucket{{.rate = {90'000, 60s}, .burst = 90'000, .cost = armor::cost_source::slot(0)}, clock}};
    CHECK(p.try_execute(op, {.cost = 40'000, .costs = {60'000}}).has_value());
    auto r = p.try_execute(op, {.cost = 1, .costs = {40'000}});
    CHECK(r.code() == armor::errc::rate_limited);
    CHECK(p.try_execute(op, {.cost = 1'000'000, .costs = {30'000}}).has_value());
    CHECK(p.try_execute(op, {.cost = 1, .costs = {0}}).has_value());  // free
    auto big = p.try_execute(op, {.costs = {90'001}});
    CHECK(big.code() == armor::errc::request_too_large);
  }
  SECTION("two buckets in one pipeline, each with its own cost") {
    armor::token_bucket requests{{.rate = {10, 1s}, .burst = 10, .cost = armor::cost_source::per_call()}, clock};
    armor::token_bucket tokens{{.rate = {1000, 1s}, .burst = 1000}, clock};
    auto p = armor::pipeline{clock, std::ref(requests), std::ref(tokens)};
    CHECK(p.try_execute(op, {.cost = 400}).has_value());
    CHECK(p.try_execute(op, {.cost = 400}).has_value());
    CHECK(requests.available() == 8);
    CHECK(tokens.available() == 200);
    auto r = p.try_execute(op, {.cost = 400});
    CHECK(r.code() == armor::errc::rate_limited);
    CHECK(r.retry_after() == std::optional<nanoseconds>{200ms});
  }
  SECTION("per key, through armor::keyed") {
    armor::keyed<armor::token_bucket<armor::manual_clock>> per_ip{
        {.rate = {1, 1s}, .burst = 1, .cost = armor::cost_source::per_call()}, {}, clock};
    auto p = armor::pipeline{clock, std::ref(per_ip)};
    CHECK(p.try_execute(op, {.key = "10.0.0.1", .cost = 5}).has_value());
    CHECK(p.try_execute(op, {.key = "10.0.0.1", .cost = 5}).code() == armor::errc::rate_limited);
  }
}

TEST_CASE("with max_wait the pipeline waits for its reserved tokens, in arrival order") {
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1s}, .burst = 1, .max_wait = 2s}, clock};
  auto p = armor::pipeline{clock, std::ref(b)};
  std::vector<nanoseconds> starts;
  auto op = [&](const armor::context& ctx) {
    starts.push_back(ctx.now().time_since_epoch());
    return 0;
  };
  REQUIRE(p.try_execute(op).has_value());  // t = 0, immediate
  REQUIRE(p.try_execute(op).has_value());  // waits until 1 s
  REQUIRE(p.try_execute(op).has_value());  // waits until 2 s
  CHECK(starts == std::vector<nanoseconds>{0ns, 1s, 2s});

  SECTION("a wait longer than max_wait is rejected and reserves nothing") {
    // Another client reserved ahead: 2 s would be needed from 2 s... but
    // take the bucket's own view: reserve 2.5 s of debt first.
    auto ahead = b.reserve(1, 5s, armor::to_timestamp(clock.now()));
    REQUIRE(ahead);
    auto ahead2 = b.reserve(1, 5s, armor::to_timestamp(clock.now()));
    REQUIRE(ahead2);
    CHECK(ahead2.wait() == 2s);
    auto r = p.try_execute(op);  // would need 3 s
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::rate_limited);
    CHECK(*r.retry_after() == 3s);
    CHECK(ahead2.permit().cancel());  // still the last: nothing was reserved after it
    ahead.permit().commit();
  }
}

TEST_CASE("a wait that would outlast the deadline fails at once with wait_exceeds_deadline and reserves nothing") {
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1s}, .burst = 1, .max_wait = 5s}, clock};
  auto p = armor::pipeline{clock, armor::deadline{1s}, std::ref(b)};
  auto op = [] { return 0; };
  REQUIRE(p.try_execute(op).has_value());
  clock.advance(1ns);  // the next token is due in 1 s - 1 ns: fits the 1 s budget
  CHECK(p.try_execute(op).has_value());
  CHECK(clock.now().time_since_epoch() == 1s);
  // Now a token is due in 1 s: waiting would end exactly at the deadline.
  auto r = p.try_execute(op);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::wait_exceeds_deadline);  // not deadline_exceeded: 1 s of budget is left
  CHECK(r.code() == std::errc::timed_out);
  CHECK(*r.retry_after() == 1s);
  // Nothing was reserved: the token is still due at 2 s.
  CHECK(b.available(armor::timestamp{2s}) == 1);
  CHECK(clock.now().time_since_epoch() == 1s);

  // Asked directly: before the deadline the wait would not fit; once the
  // deadline has passed, the budget is spent.
  armor::context fits_not(armor::timestamp{1s}, {.timeout = 500ms});
  auto a = b.admit(fits_not);
  CHECK(a.kind == armor::admission_kind::rejected);
  CHECK(a.code == armor::errc::wait_exceeds_deadline);
  CHECK(a.retry_after == std::optional<std::chrono::nanoseconds>{1s});
  armor::context spent(armor::timestamp{1s}, {.timeout = 0ns});
  auto s = b.admit(spent);
  CHECK(s.kind == armor::admission_kind::rejected);
  CHECK(s.code == armor::errc::deadline_exceeded);
}

TEST_CASE("a wait admission dropped by the driver gives its reservation back") {
  // The driver drops a wait's permit without waiting when it would end at
  // or past the deadline; the bucket avoids that case itself, so drive the
  // policy directly, as a driver (or a cancelled coroutine) would.
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1s}, .burst = 1, .max_wait = 5s}, clock};
  armor::context ctx(armor::timestamp{0ns});
  auto first = b.admit(ctx);
  REQUIRE(first.kind == armor::admission_kind::admitted);
  b.settle(ctx, std::move(first.permit), armor::verdict::success());
  {
    auto w = b.admit(ctx);
    REQUIRE(w.kind == armor::admission_kind::wait);
    CHECK(w.delay == 1s);
  }  // dropped unsettled
  auto w2 = b.admit(ctx);
  REQUIRE(w2.kind == armor::admission_kind::wait);
  CHECK(w2.delay == 1s);  // the dropped reservation was given back
  b.settle(ctx, std::move(w2.permit), armor::verdict::success());
  auto w3 = b.admit(ctx);
  CHECK(w3.delay == 2s);  // a settled one is kept
}

TEST_CASE("a bucket is moved into a pipeline and shared with std::ref") {
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1s}, .burst = 2}, clock};
  REQUIRE(b.try_acquire());
  armor::token_bucket moved(std::move(b));
  CHECK(moved.available() == 1);
  auto p1 = armor::pipeline{clock, std::ref(moved)};
  auto p2 = armor::pipeline{clock, std::ref(moved)};
  CHECK(p1.try_execute([] { return 0; }).has_value());
  CHECK_FALSE(p2.try_execute([] { return 0; }).has_value());
  static_assert(armor::policy<armor::token_bucket<>>);
  static_assert(std::is_nothrow_move_constructible_v<armor::token_bucket<>>);
  static_assert(alignof(armor::token_bucket<>) == armor::detail::cache_line);
  static_assert(sizeof(armor::token_bucket<>) == armor::detail::cache_line);
  static_assert(sizeof(armor::token_bucket<armor::steady_clock, false>) <= 96);
}

// ---------------------------------------------------------------------------
// Options and the parser

TEST_CASE("token_bucket refuses bad options at construction with a message naming the option") {
  auto message = [](const armor::token_bucket_options& o) -> std::string {
    try {
      armor::token_bucket b{o};
      (void)b;
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "accepted";
  };
  CHECK(message({.rate = {0, 1s}}).find("rate.count must be positive") != std::string::npos);
  CHECK(message({.rate = {-5, 1s}}).find("rate.count must be positive (got -5)") != std::string::npos);
  CHECK(message({.rate = {1, 0s}}).find("rate.per must be positive") != std::string::npos);
  CHECK(message({.rate = {1, -1s}}).find("rate.per must be positive") != std::string::npos);
  CHECK(message({.rate = {2, 1ns}}).find("more than one token per nanosecond") != std::string::npos);
  CHECK(message({.rate = {1'000'000'001, 1s}}).find("more than one token per nanosecond") != std::string::npos);
  CHECK(message({.rate = {1, 1s}, .burst = 0}).find("burst must be at least 1 (got 0)") != std::string::npos);
  CHECK(message({.rate = {1, 1s}, .burst = -3}).find("burst must be at least 1") != std::string::npos);
  CHECK(message({.rate = {1, 1s}, .cost = armor::cost_source::slot(armor::cost_slots)})
            .find("armor::token_bucket: cost selects cost_source::slot(3), but a call has slots 0 to 2") !=
        std::string::npos);
  CHECK(message({.rate = {1, 1s}, .cost = armor::cost_source::slot(armor::cost_slots - 1)}) == "accepted");
  CHECK(message({.rate = {1, 1s}, .max_wait = -1ms}).find("max_wait must not be negative") != std::string::npos);
  CHECK(message({.rate = {1, 24h}, .burst = 1'000'000}).find("burst * interval + max_wait is too long") !=
        std::string::npos);
  CHECK(message({.rate = {1, 1ns}, .burst = 1}) == "accepted");
  CHECK(message({.rate = {1, 24h}, .burst = 1000}) == "accepted");
}

TEST_CASE("the rate parser reads the usual spellings") {
  using armor::rate;
  CHECK(rate::parse("100/s") == rate{100, 1s});
  CHECK(rate::parse("60/minute") == rate{60, 1min});
  CHECK(rate::parse("5000/h") == rate{5000, 1h});
  CHECK(rate::parse("10r/s") == rate{10, 1s});
  CHECK(rate::parse("10r/m") == rate{10, 1min});
  CHECK(rate::parse("100/10s") == rate{100, 10s});
  CHECK(rate::parse(" 3 / second ") == rate{3, 1s});
  CHECK(rate::parse("3 per Second") == rate{3, 1s});
  CHECK(rate::parse("7/min") == rate{7, 1min});
  CHECK(rate::parse("1/d") == rate{1, 24h});
  CHECK(rate::parse("2/days") == rate{2, 24h});
  CHECK(rate::parse("5/250ms") == rate{5, 250ms});
  CHECK(rate::parse("1/1500us") == rate{1, 1500us});
  CHECK(rate::parse("1/3\xC2\xB5s") == rate{1, 3us});
  CHECK(rate::parse("1/ns") == rate{1, 1ns});
  CHECK(rate::parse("1/HOURS") == rate{1, 1h});

  const auto o = armor::token_bucket_options::parse("10r/s burst=20");
  CHECK(o.rate == rate{10, 1s});
  CHECK(o.burst == 20);
  CHECK(o.max_wait == 0ns);
  const auto o2 = armor::token_bucket_options::parse("5000/h, burst = 100, max_wait=2s");
  CHECK(o2.rate == rate{5000, 1h});
  CHECK(o2.burst == 100);
  CHECK(o2.max_wait == 2s);
  CHECK(armor::token_bucket_options::parse("100/s").burst == 1);
  CHECK(armor::token_bucket_options::parse("1/s;burst=3").burst == 3);
}

TEST_CASE("malformed rate text fails with a message that quotes the input") {
  auto message = [](std::string_view text) -> std::string {
    try {
      (void)armor::token_bucket_options::parse(text);
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "accepted";
  };
  const std::vector<std::pair<std::string_view, std::string_view>> cases{
      {"", "expected a rate"},
      {"abc", "expected the count"},
      {"100", "expected '/' or \"per\""},
      {"100/", "expected a time unit"},
      {"100/x", "unknown time unit \"x\""},
      {"100/fortnight", "unknown time unit \"fortnight\""},
      {"0/s", "the count must be at least 1"},
      {"-1/s", "without a sign"},
      {"100/0s", "the period must be at least 1"},
      {"10r/s burst=", "expected the burst at the end"},
      {"10r/s burst=0", "burst must be at least 1"},
      {"10r/s burst=2 burst=3", "burst is given twice"},
      {"10r/s foo=1", "unknown option \"foo\""},
      {"10r/s burst 3", "expected '=' after \"burst\""},
      {"10r/s max_wait=5", "expected a time unit"},
      {"99999999999999999999/s", "the count is too large"},
      {"1/9999999999999d", "the period is too long"},
      {"10/s/s", "expected a blank or ','"},
  };
  for (const auto& [text, what] : cases) {
    const std::string m = message(text);
    INFO(m);
    // Appended, not "\"" + std::string(text): GCC 12 -O3's -Wrestrict false positive.
    std::string quoted = "\"";
    quoted += text;
    quoted += '"';
    CHECK(m.find(quoted) != std::string::npos);
    CHECK(m.find(what) != std::string::npos);
  }
  CHECK_THROWS_AS(armor::rate::parse("100/s burst=2"), armor::error);  // a rate alone takes no options
}

// ---------------------------------------------------------------------------
// Response headers

namespace {
template <class Permit>
std::map<std::string, std::string> headers_of(const armor::token_bucket_decision<Permit>& d,
                                              const armor::http::rate_limit_header_options& o = {}) {
  std::map<std::string, std::string> h;
  armor::http::rate_limit_headers(d, [&](std::string_view name, std::string_view value) {
    CHECK(h.count(std::string(name)) == 0);
    h[std::string(name)] = std::string(value);
  }, o);
  return h;
}
}  // namespace

TEST_CASE("rate_limit_headers writes Retry-After, RateLimit-* and X-RateLimit-*") {
  bucket b{{.rate = {1, 2s}, .burst = 3}, armor::manual_clock{}};
  auto ok = headers_of(b.try_acquire(2, at(0)));
  CHECK(ok == std::map<std::string, std::string>{{"RateLimit-Limit", "3"},
                                                 {"RateLimit-Remaining", "1"},
                                                 {"RateLimit-Reset", "4"},
                                                 {"RateLimit-Policy", "3;w=6"},  // 3 tokens refill in 6 s
                                                 {"X-RateLimit-Limit", "3"},
                                                 {"X-RateLimit-Remaining", "1"},
                                                 {"X-RateLimit-Reset", "4"}});
  (void)b.try_acquire(1, at(0));
  auto denied = headers_of(b.try_acquire(1, at(500ms)));
  CHECK(denied["Retry-After"] == "2");  // 1.5 s, rounded up
  CHECK(denied["RateLimit-Remaining"] == "0");
  CHECK(denied["RateLimit-Reset"] == "6");  // 5.5 s
  CHECK(headers_of(b.try_acquire(1, at(2s - 1ns)))["Retry-After"] == "1");  // 1 ns: still a whole second
  CHECK(headers_of(b.try_acquire(1, at(0)))["Retry-After"] == "2");         // exactly 2 s

  SECTION("a reservation's decision writes the same headers") {
    auto r = b.reserve(1, 10s, at(0));
    REQUIRE(r);
    CHECK(r.wait() == 2s);
    auto h = headers_of(r);
    CHECK(h.count("Retry-After") == 0);
    CHECK(h["RateLimit-Remaining"] == "0");
    CHECK(h["RateLimit-Reset"] == "8");  // 4 tokens owed at 2 s each
    CHECK(armor::http::rate_limit_headers(r).size() == 7);
    r.permit().commit();
  }
  SECTION("a request larger than the burst gets no Retry-After") {
    auto h = headers_of(b.try_acquire(4, at(0)));
    CHECK(h.count("Retry-After") == 0);
    CHECK(h["RateLimit-Limit"] == "3");
  }
  SECTION("spellings can be chosen, and X-RateLimit-Reset can be Unix time") {
    const auto wall = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}};
    auto h = headers_of(b.try_acquire(1, at(500ms)), {.standard = false, .retry_after = false, .wall_now = wall});
    CHECK(h.size() == 3);
    CHECK(h["X-RateLimit-Reset"] == "1700000006");
  }
  SECTION("the list form holds the same headers without allocating") {
    const auto list = armor::http::rate_limit_headers(b.try_acquire(1, at(500ms)));
    CHECK(list.size() == 8);
    CHECK(list.find("Retry-After") == std::optional<std::string_view>{"2"});
    CHECK(list.find("X-RateLimit-Limit") == std::optional<std::string_view>{"3"});
    CHECK(list.find("RateLimit-Policy") == std::optional<std::string_view>{"3;w=6"});
    CHECK_FALSE(list.find("Nope").has_value());
    std::size_t n = 0;
    for (const auto& f : list) n += f.name.empty() ? 0 : 1;
    CHECK(n == 8);
  }
  CHECK(armor::http::retry_after_seconds(1ns) == 1);
  CHECK(armor::http::retry_after_seconds(0ns) == 1);
  CHECK(armor::http::retry_after_seconds(2s) == 2);
  CHECK(armor::http::retry_after_seconds(2001ms) == 3);
}

// ---------------------------------------------------------------------------
// stats()

TEST_CASE("stats report the limit, the level and, with count_calls, every decision") {
  armor::manual_clock clock;
  bucket b{{.rate = {1, 1s}, .burst = 3, .count_calls = true}, clock};
  auto s = b.stats(at(0));
  CHECK(s.rate == armor::rate{1, 1s});
  CHECK(s.burst == 3);
  CHECK(s.available == 3);
  CHECK(s.until_full == 0s);
  CHECK(s.counting);
  CHECK(s.granted == 0);

  REQUIRE(b.try_acquire(2, at(0)));
  CHECK_FALSE(b.try_acquire(2, at(0)));
  CHECK_FALSE(b.try_acquire(4, at(0)));
  auto r = b.reserve(1, 10s, at(0));
  REQUIRE(r);
  r.permit().commit();
  s = b.stats(at(500ms));
  CHECK(s.granted == 2);
  CHECK(s.rejected == 1);
  CHECK(s.too_large == 1);
  CHECK(s.available == 0);
  CHECK(s.until_full == 2500ms);  // 3 tokens owed at 0 s, 0.5 s refilled

  SECTION("a pipeline's admissions count too") {
    auto p = armor::pipeline{clock, std::ref(b)};
    clock.set(armor::manual_clock::time_point{10s});
    CHECK(p.try_execute([] { return 1; }).has_value());
    CHECK(b.stats().granted == 3);
  }
  SECTION("a rate change shows at once") {
    b.set_rate({2, 1s}, 4, at(1s));
    s = b.stats(at(1s));
    CHECK(s.rate == armor::rate{2, 1s});
    CHECK(s.burst == 4);
  }
}

TEST_CASE("stats describe their fields: the armor_rate_limit_* families, counters only while counting") {
  using stats = armor::token_bucket_stats;
  std::vector<std::string> names;
  std::vector<std::string> metrics;
  std::vector<bool> counted;
  armor::detail::for_each_field<stats>([&](const auto& f) {
    names.emplace_back(f.name);
    metrics.emplace_back(f.metric);
    counted.push_back(f.counted);
    CHECK_FALSE(f.help.empty());
    CHECK(f.type != armor::metric_type::none);
  });
  CHECK(names == std::vector<std::string>{"rate", "burst", "available", "until_full", "granted", "rejected",
                                          "too_large"});
  CHECK(metrics == std::vector<std::string>{"armor_rate_limit_tokens_per_second", "armor_rate_limit_burst",
                                            "armor_rate_limit_available_tokens", "armor_rate_limit_full_in_seconds",
                                            "armor_rate_limit_granted_total", "armor_rate_limit_rejected_total",
                                            "armor_rate_limit_too_large_total"});
  CHECK(counted == std::vector<bool>{false, false, false, false, true, true, true});
  CHECK(std::get<4>(stats::fields()).type == armor::metric_type::counter);
  CHECK(std::get<0>(stats::fields()).type == armor::metric_type::gauge);

  // The rate is exported in tokens per second, durations in seconds.
  CHECK(armor::detail::metric_value(armor::rate{100, 1s}) == 100.0);
  CHECK(armor::detail::metric_value(armor::rate{1, 1min}) == 1.0 / 60.0);
  CHECK(armor::detail::metric_value(armor::rate{3, 2ms}) == 1500.0);
  bucket b{{.rate = {1, 1s}, .burst = 3}, armor::manual_clock{}};
  (void)b.try_acquire(2, at(0));
  const stats s = b.stats(at(500ms));
  CHECK(armor::detail::metric_value(s.*(std::get<3>(stats::fields()).member)) == 1.5);
  CHECK_FALSE(armor::detail::counting(s));
}

TEST_CASE("without count_calls a bucket counts nothing, and keyed buckets never count") {
  bucket b{{.rate = {1, 1s}, .burst = 1}, armor::manual_clock{}};
  REQUIRE(b.try_acquire(1, at(0)));
  CHECK_FALSE(b.try_acquire(1, at(0)));
  const auto s = b.stats(at(0));
  CHECK_FALSE(s.counting);
  CHECK(s.granted == 0);
  CHECK(s.rejected == 0);
  CHECK(s.available == 0);
  CHECK(s.until_full == 1s);

  armor::token_bucket<armor::manual_clock, false> unpadded{{.rate = {1, 1s}, .burst = 1, .count_calls = true},
                                                            armor::manual_clock{}};
  REQUIRE(unpadded.try_acquire(1, at(0)));
  CHECK_FALSE(unpadded.stats(at(0)).counting);
  CHECK(unpadded.stats(at(0)).granted == 0);
  static_assert(sizeof(armor::token_bucket<armor::steady_clock, false>) <= 96, "counters cost no memory per key");
}

// ---------------------------------------------------------------------------
// The listener

TEST_CASE("a listener hears every refusal, once, with what the caller is told") {
  struct recorder {
    std::vector<armor::token_bucket_event> events;
    void operator()(const armor::token_bucket_event& e) noexcept { events.push_back(e); }
  };
  recorder heard;
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1s}, .burst = 2}, clock, std::ref(heard)};
  static_assert(std::is_same_v<decltype(b), armor::token_bucket<armor::manual_clock, true, std::reference_wrapper<recorder>>>);
  REQUIRE(b.try_acquire(2, at(0)));
  CHECK(heard.events.empty());  // grants are not events
  const auto d = b.try_acquire(1, at(250ms));
  REQUIRE_FALSE(d);
  REQUIRE(heard.events.size() == 1);
  CHECK(heard.events[0].status == armor::token_bucket_status::denied);
  CHECK(heard.events[0].tokens == 1);
  CHECK(heard.events[0].retry_after == 750ms);
  CHECK(heard.events[0].retry_after == d.retry_after());
  CHECK_FALSE(b.try_acquire(3, at(250ms)));
  REQUIRE(heard.events.size() == 2);
  CHECK(heard.events[1].status == armor::token_bucket_status::too_large);
  CHECK(heard.events[1].retry_after == 0s);

  SECTION("a pipeline's rejection is heard too") {
    auto p = armor::pipeline{clock, std::ref(b)};
    clock.set(armor::manual_clock::time_point{300ms});
    CHECK_FALSE(p.try_execute([] { return 1; }).has_value());
    REQUIRE(heard.events.size() == 3);
    CHECK(heard.events[2].retry_after == 700ms);
  }
  SECTION("a listener costs nothing without one") {
    static_assert(sizeof(armor::token_bucket<>) == armor::detail::cache_line);
    static_assert(!armor::listener_for<int, armor::token_bucket_event>);
  }
}
