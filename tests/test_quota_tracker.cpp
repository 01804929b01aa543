// armor::quota_tracker: calendar and rolling windows, reservations, alerts,
// usage reports and the pipeline protocol. Every test runs on a manual_clock
// used as the wall clock: its epoch is 1970-01-01T00:00 UTC, so
// sys_days{2024y / 2 / 29} is a real date.
#include <armor/backoff.hpp>
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

using tracker = armor::quota_tracker<armor::manual_clock>;

/// A wall time: a date and a time of day, in UTC.
sys_time<nanoseconds> utc(sys_days d, nanoseconds time_of_day = 0ns) { return d + time_of_day; }

void set(const armor::manual_clock& c, sys_time<nanoseconds> t) {
  c.set(armor::manual_clock::time_point{t.time_since_epoch()});
}

armor::manual_clock clock_at(sys_time<nanoseconds> t) {
  armor::manual_clock c;
  set(c, t);
  return c;
}

/// The message of the armor::error that building a tracker from `o` throws.
std::string refusal(armor::quota_tracker_options o) {
  try {
    tracker t{std::move(o)};
    (void)t;
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Consumes one unit at a time until refused; returns how many were granted.
long fill(tracker& t, long at_most = 1'000'000) {
  long n = 0;
  while (n < at_most && t.try_consume(1)) ++n;
  return n;
}

/// Keeps every event it hears (held by std::ref: the tracker calls it
/// through the reference).
struct recording_listener {
  std::vector<armor::quota_tracker_event> alerts;
  void operator()(const armor::quota_tracker_event& e) noexcept { alerts.push_back(e); }
};

}  // namespace

// ---------------------------------------------------------------- the type

TEST_CASE("quota_tracker is a policy, deduced from its options, movable and not copyable") {
  armor::quota_tracker t{{.windows = {quota_window::per_day(50)}}};
  static_assert(std::is_same_v<decltype(t), armor::quota_tracker<armor::system_clock, armor::memory_quota_storage,
                                                                 armor::no_listener>>);
  static_assert(armor::policy<decltype(t)>);
  static_assert(!armor::looping_policy<decltype(t)>);
  static_assert(std::is_nothrow_move_constructible_v<decltype(t)>);
  static_assert(!std::is_copy_constructible_v<decltype(t)>);
  static_assert(std::is_same_v<tracker::permit_type, armor::quota_tracker_permit<armor::manual_clock>>);
  static_assert(std::is_same_v<decltype(t)::permit_type, armor::quota_tracker_permit<>>);
  static_assert(std::is_nothrow_move_constructible_v<tracker::permit_type>);
  static_assert(std::is_default_constructible_v<tracker::permit_type>);
  static_assert(!std::is_copy_constructible_v<tracker::permit_type>);
  static_assert(std::is_same_v<decltype(t.try_consume()), armor::quota_tracker_decision<>>);
  static_assert(std::is_same_v<decltype(t.reserve(1)), armor::quota_tracker_decision<armor::quota_tracker_permit<>>>);
  // No clock_type: the tracker reads its own wall clock, so any pipeline may hold it.
  static_assert(armor::detail::clock_agrees<decltype(t), armor::steady_clock>());
  static_assert(armor::detail::clock_agrees<tracker, armor::steady_clock>());
  static_assert(noexcept(t.try_consume(1)));

  armor::manual_clock clock;
  armor::quota_tracker m{{.windows = {quota_window::per_minute(3)}}, clock};
  static_assert(std::is_same_v<decltype(m), tracker>);
  CHECK(m.window_count() == 1);
  CHECK(m.options().windows[0].limit == 3);
  CHECK(m.clock() == clock);
}

TEST_CASE("the named windows are the calendar's") {
  CHECK(quota_window::per_minute(1).length == 1min);
  CHECK(quota_window::per_hour(1).length == 1h);
  CHECK(quota_window::per_day(1).length == 24h);
  CHECK(quota_window::per_week(1).kind == armor::quota_window_kind::week);
  CHECK(quota_window::per_month(1).kind == armor::quota_window_kind::month);
  CHECK(quota_window::per_month(7).limit == 7);
  const quota_window r = quota_window::rolling(5, 1h, 12);
  CHECK(r.kind == armor::quota_window_kind::rolling);
  CHECK(r.buckets == 12);
  CHECK(quota_window::fixed(4, 10min).length == 10min);
}

TEST_CASE("bad quota options are refused at construction with a message naming the option") {
  CHECK(contains(refusal({}), "at least one window is required"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(0)}}), "windows[0].limit must be at least 1 (got 0)"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5), quota_window::per_hour(-1)}}),
                 "windows[1].limit must be at least 1"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(armor::quota_max_limit + 1)}}),
                 "windows[0].limit must be at most 549755813887"));
  CHECK(contains(refusal({.windows = {{.limit = 5}}}), "windows[0].length must be positive (got 0 ns)"));
  CHECK(contains(refusal({.windows = {quota_window::fixed(5, -1s)}}), "windows[0].length must be positive"));
  CHECK(contains(refusal({.windows = {quota_window::rolling(5, 0s)}}), "windows[0].length must be positive"));
  CHECK(contains(refusal({.windows = {quota_window::rolling(5, 1min, 0)}}),
                 "windows[0].buckets must be within [1, 1024]"));
  CHECK(contains(refusal({.windows = {quota_window::rolling(5, 1min, 2000)}}), "buckets must be within"));
  CHECK(contains(refusal({.windows = {quota_window::rolling(5, 100ns, 7)}}),
                 "must be a whole number of nanoseconds per bucket"));
  CHECK(contains(refusal({.windows = {{.limit = 5, .length = 1h, .kind = armor::quota_window_kind::month}}}),
                 "windows[0].length must be left zero for a week or month window"));
  CHECK(contains(refusal({.windows = {{.limit = 5, .length = 1h, .kind = static_cast<armor::quota_window_kind>(9)}}}),
                 "is not a quota_window_kind value"));
  CHECK(contains(refusal({.windows = std::vector<quota_window>(9, quota_window::per_day(1))}),
                 "at most 8 windows (got 9)"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .utc_offset = 24h}),
                 "utc_offset must be within (-24h, 24h)"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .utc_offset = -24h}), "utc_offset"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .alerts = {0.8, 0.0}}),
                 "alerts[1] must be within (0, 1] (got 0.000000)"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .alerts = {1.5}}), "alerts[0] must be within (0, 1]"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .alerts = {-0.1}}), "alerts[0]"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .alerts = {std::nan("")}}), "alerts[0]"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .alerts = std::vector<double>(9, 0.5)}),
                 "at most 8 alert thresholds"));
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .retryable_within = -1s}),
                 "retryable_within must not be negative"));
  // The limits of the ranges are accepted.
  CHECK(refusal({.windows = {quota_window::per_day(armor::quota_max_limit), quota_window::rolling(1, 1024ns, 1024)},
                 .utc_offset = 23h + 59min,
                 .alerts = {1.0, 1e-9}}) == "(accepted)");
  CHECK(refusal({.windows = {quota_window::per_day(1)}, .alerts = {}}) == "(accepted)");
}

// ---------------------------------------------------------------- calendar windows

TEST_CASE("a daily window resets at midnight UTC by default") {
  const auto clock = clock_at(utc(sys_days{2024y / March / 10}, 23h + 59min));
  tracker t{{.windows = {quota_window::per_day(3)}}, clock};
  CHECK(fill(t) == 3);
  const armor::quota_tracker_decision<> d = t.try_consume();
  CHECK_FALSE(d);
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.code() == armor::errc::quota_exhausted);
  CHECK(d.window() == 0);
  CHECK(d.used() == 3);
  CHECK(d.limit() == 3);
  CHECK(d.retry_after() == 1min);
  clock.advance(1min - 1ns);
  CHECK_FALSE(t.try_consume());
  CHECK(t.try_consume(0).status() == armor::quota_tracker_status::exhausted);
  clock.advance(1ns);  // 2024-03-11T00:00Z
  CHECK(fill(t) == 3);
  CHECK(t.try_consume().retry_after() == 24h);
}

TEST_CASE("a daily window resets at local midnight at any UTC offset") {
  struct sample {
    minutes offset;
    nanoseconds reset_utc;  // local midnight, as a UTC time of day on the day before or of 2024-06-15
  };
  // 00:00 at UTC+5:30 is 18:30 UTC the day before; at UTC-8, 08:00 UTC; at
  // UTC+14 (Kiribati), 10:00 UTC the day before; at UTC-11, 11:00 UTC.
  const sample samples[] = {{0min, 24h},           {5h + 30min, 18h + 30min}, {-8h, 8h + 24h},
                            {14h, 10h},            {-11h, 11h + 24h},         {1h, 23h},
                            {-(3h + 30min), 3h + 30min + 24h}};
  for (const sample& s : samples) {
    INFO("offset " << s.offset.count() << " min");
    // The last nanosecond of a local day, then its first.
    const auto reset = utc(sys_days{2024y / June / 14}, s.reset_utc);
    const auto clock = clock_at(reset - 1ns);
    tracker t{{.windows = {quota_window::per_day(2)}, .utc_offset = s.offset}, clock};
    CHECK(fill(t) == 2);
    CHECK(t.try_consume().retry_after() == 1ns);
    CHECK(t.usage(0).resets_at == reset);
    clock.advance(1ns);
    CHECK(fill(t) == 2);
    CHECK(t.usage(0).resets_at == reset + 24h);
    CHECK(t.try_consume().retry_after() == 24h);
  }
}

TEST_CASE("an hourly window turns over on the local hour") {
  // At UTC+5:30 the local hour begins at :30 UTC.
  const auto clock = clock_at(utc(sys_days{2024y / June / 14}, 10h + 29min + 59s));
  tracker india{{.windows = {quota_window::per_hour(1)}, .utc_offset = 5h + 30min}, clock};
  tracker utc_hour{{.windows = {quota_window::per_hour(1)}}, clock};
  CHECK(india.try_consume());
  CHECK(utc_hour.try_consume());
  CHECK(india.try_consume().retry_after() == 1s);
  CHECK(utc_hour.try_consume().retry_after() == 30min + 1s);
  clock.advance(1s);  // 10:30 UTC = 16:00 in India
  CHECK(india.try_consume());
  CHECK_FALSE(utc_hour.try_consume());
  clock.advance(30min);  // 11:00 UTC
  CHECK(utc_hour.try_consume());
  CHECK_FALSE(india.try_consume());
}

TEST_CASE("a fixed window of any length is aligned on local midnight") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 14}, 10h + 7min));
  tracker t{{.windows = {quota_window::fixed(1, 10min)}}, clock};
  CHECK(t.try_consume());
  CHECK(t.try_consume().retry_after() == 3min);  // the period is 10:00..10:10
  tracker six{{.windows = {quota_window::fixed(1, 6h)}, .utc_offset = 2h}, clock};
  CHECK(six.try_consume());
  // Local time is 12:07: the period is 12:00..18:00 local, 10:00..16:00 UTC.
  CHECK(six.try_consume().retry_after() == 5h + 53min);
}

TEST_CASE("a daily window counts the leap day as a day of its own") {
  const auto clock = clock_at(utc(sys_days{2024y / February / 28}, 12h));
  tracker t{{.windows = {quota_window::per_day(1)}}, clock};
  CHECK(t.try_consume());
  CHECK_FALSE(t.try_consume());
  set(clock, utc(sys_days{2024y / February / 29}));
  CHECK(t.try_consume());
  CHECK(t.usage(0).resets_at == utc(sys_days{2024y / March / 1}));
  CHECK_FALSE(t.try_consume());
  set(clock, utc(sys_days{2024y / March / 1}));
  CHECK(t.try_consume());
}

TEST_CASE("a monthly window resets on the 1st at local midnight, whatever the month's length") {
  struct sample {
    sys_days first;  // the first day of a month
    days length;     // how long that month is
  };
  const sample samples[] = {
      {sys_days{2024y / January / 1}, days{31}}, {sys_days{2024y / February / 1}, days{29}},  // leap year
      {sys_days{2023y / February / 1}, days{28}}, {sys_days{2100y / February / 1}, days{28}},  // not a leap year
      {sys_days{2000y / February / 1}, days{29}}, {sys_days{2024y / April / 1}, days{30}},
      {sys_days{2024y / December / 1}, days{31}},  // into the next year
  };
  for (const sample& s : samples) {
    for (const minutes offset : {0min, 9h + 0min, -(5h + 0min)}) {
      INFO(s.first.time_since_epoch().count() << " at offset " << offset.count());
      // Local midnight of the 1st is 00:00 - offset in UTC.
      const auto begin = utc(s.first) - offset;
      const auto end = begin + s.length;
      const auto clock = clock_at(begin - 1ns);
      tracker t{{.windows = {quota_window::per_month(1)}, .utc_offset = offset}, clock};
      CHECK(t.try_consume());  // the last nanosecond of the month before
      CHECK(t.try_consume().retry_after() == 1ns);
      clock.advance(1ns);
      CHECK(t.try_consume());
      const armor::quota_tracker_decision<> d = t.try_consume();
      CHECK(d.retry_after() == s.length);
      CHECK(t.usage(0).resets_at == end);
      set(clock, end - 1ns);
      CHECK_FALSE(t.try_consume());
      set(clock, end);
      CHECK(t.try_consume());
    }
  }
}

TEST_CASE("a weekly window runs Monday to Monday, local time") {
  // 2024-01-01 was a Monday.
  const auto clock = clock_at(utc(sys_days{2024y / January / 3}, 15h));
  tracker t{{.windows = {quota_window::per_week(1)}}, clock};
  CHECK(t.try_consume());
  CHECK(t.usage(0).resets_at == utc(sys_days{2024y / January / 8}));
  tracker tokyo{{.windows = {quota_window::per_week(1)}, .utc_offset = 9h}, clock};
  CHECK(tokyo.try_consume());
  CHECK(tokyo.usage(0).resets_at == utc(sys_days{2024y / January / 7}, 15h));
  set(clock, utc(sys_days{2024y / January / 7}, 15h));  // Monday 00:00 in Tokyo
  CHECK(tokyo.try_consume());
  CHECK_FALSE(t.try_consume());
  set(clock, utc(sys_days{2024y / January / 8}));
  CHECK(t.try_consume());
}

TEST_CASE("calendar windows work before the Unix epoch") {
  const auto clock = clock_at(utc(sys_days{1969y / December / 31}, 23h + 59min));
  tracker t{{.windows = {quota_window::per_day(1), quota_window::per_month(2)}}, clock};
  CHECK(t.try_consume());
  CHECK(t.try_consume().retry_after() == 1min);
  CHECK(t.usage(1).resets_at == utc(sys_days{1970y / January / 1}));
  clock.advance(1min);
  CHECK(t.try_consume());
}

TEST_CASE("a window never moves back when the wall clock steps back") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 10s));
  tracker t{{.windows = {quota_window::per_day(3)}}, clock};
  CHECK(t.try_consume(2));
  set(clock, utc(sys_days{2024y / June / 14}, 23h + 59min));  // NTP stepped the clock back
  CHECK(t.usage(0).used == 2);                                  // no silent reset
  CHECK(t.try_consume());                                       // counted in June 15
  CHECK_FALSE(t.try_consume());
  CHECK(t.try_consume().retry_after() == 24h + 1min);  // until June 16, as the clock now reads
  set(clock, utc(sys_days{2024y / June / 16}));
  CHECK(t.try_consume());
}

// ---------------------------------------------------------------- rolling windows

TEST_CASE("a rolling window counts a unit for between its length and one bucket more") {
  // 10 units per minute, in 6 buckets of 10 s.
  const auto start = utc(sys_days{2024y / June / 15}, 12h);
  const auto clock = clock_at(start + 5s);
  tracker t{{.windows = {quota_window::rolling(10, 1min, 6)}}, clock};
  CHECK(t.try_consume(10));  // in the bucket 12:00:00..12:00:10
  const armor::quota_tracker_decision<> d = t.try_consume();
  CHECK_FALSE(d);
  // The bucket leaves the window when the seventh after it begins: 12:01:10.
  CHECK(d.retry_after() == 65s);
  set(clock, start + 70s - 1ns);
  CHECK_FALSE(t.try_consume());
  set(clock, start + 70s);
  CHECK(t.try_consume(10));
  CHECK_FALSE(t.try_consume());
}

TEST_CASE("a rolling window frees its oldest buckets first and says when enough is free") {
  const auto start = utc(sys_days{2024y / June / 15}, 12h);
  const auto clock = clock_at(start);
  tracker t{{.windows = {quota_window::rolling(10, 1min, 6)}}, clock};
  CHECK(t.try_consume(3));  // bucket 0
  clock.advance(20s);
  CHECK(t.try_consume(4));  // bucket 2
  clock.advance(20s);
  CHECK(t.try_consume(3));  // bucket 4, t = 40 s
  CHECK(t.usage(0).used == 10);
  // One unit: bucket 0 (3 units) leaves at 70 s.
  CHECK(t.try_consume(1).retry_after() == 30s);
  // Five units: buckets 0 and 2 (7 units) must leave; bucket 2 leaves at 90 s.
  CHECK(t.try_consume(5).retry_after() == 50s);
  // Ten: all of it; bucket 4 leaves at 110 s.
  CHECK(t.try_consume(10).retry_after() == 70s);
  const armor::quota_usage u = t.usage(0);
  CHECK(u.resets_in == 30s);  // when the oldest units expire
  set(clock, start + 70s);
  CHECK(t.usage(0).used == 7);
  CHECK(t.try_consume(3));
  CHECK_FALSE(t.try_consume(1));
  set(clock, start + 90s);
  CHECK(t.usage(0).used == 6);
}

TEST_CASE("a rolling window never admits more than its limit in any span of its length") {
  // Arrivals every 1.3 s for 10 minutes; an exact sliding log of the last
  // 60 s must never hold more than the limit.
  const auto start = utc(sys_days{2024y / June / 15}, 12h);
  const auto clock = clock_at(start);
  tracker t{{.windows = {quota_window::rolling(7, 1min, 4)}}, clock};
  std::vector<nanoseconds> admitted;
  for (int i = 0; i < 460; ++i) {
    if (t.try_consume()) admitted.push_back(clock.now().time_since_epoch());
    clock.advance(1300ms);
  }
  std::size_t worst = 0;
  for (std::size_t i = 0; i < admitted.size(); ++i) {
    std::size_t j = i;
    while (j < admitted.size() && admitted[j] - admitted[i] < 1min) ++j;
    worst = std::max(worst, j - i);
  }
  CHECK(worst == 7);
  // And it is not far below: at least 7 in every 75 s (one bucket more).
  CHECK(admitted.size() >= 460 * 1300 / 75'000 * 7);
}

TEST_CASE("a rolling window with one bucket is a sliding pair of periods") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::rolling(2, 10s, 1)}}, clock};
  CHECK(t.try_consume(2));
  clock.advance(10s);
  CHECK_FALSE(t.try_consume());  // the previous bucket still counts
  CHECK(t.try_consume().retry_after() == 10s);
  clock.advance(10s);
  CHECK(t.try_consume(2));
}

TEST_CASE("a window idle for a long time starts empty") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::rolling(5, 1s, 10), quota_window::fixed(5, 100ms)}}, clock};
  CHECK(t.try_consume(5));
  // A counter keeps its slice modulo 2^24 (detail/quota_word.hpp): after
  // 2^24 + 5000 slices of 100 ms it is read as an old slice, as it is.
  clock.advance(100ms * ((std::int64_t{1} << 24) + 5000));
  CHECK(t.usage(0).used == 0);
  CHECK(t.usage(1).used == 0);
  CHECK(t.try_consume(5));
}

TEST_CASE("a counter idle for exactly 2^24 slices keeps its old count for a while, never fewer units") {
  // The one misreading of a 24-bit slice tag, documented in
  // detail/quota_word.hpp: it costs admissions, it never adds any.
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::fixed(5, 100ms)}}, clock};
  CHECK(t.try_consume(5));
  clock.advance(100ms * (std::int64_t{1} << 24));
  CHECK(t.usage(0).used == 5);
  CHECK_FALSE(t.try_consume(1));
  clock.advance(100ms);
  CHECK(t.try_consume(5));
}

// ---------------------------------------------------------------- several windows

TEST_CASE("a consumption is all or nothing across windows") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 9h));
  tracker t{{.windows = {quota_window::per_minute(3), quota_window::per_hour(5), quota_window::per_day(100)}}, clock};
  CHECK(fill(t) == 3);
  armor::quota_tracker_decision<> d = t.try_consume();
  CHECK(d.window() == 0);
  CHECK(d.retry_after() == 1min);
  clock.advance(1min);
  CHECK(t.try_consume(2));
  d = t.try_consume(1);
  CHECK_FALSE(d);
  CHECK(d.window() == 1);  // the hour is full
  CHECK(d.used() == 5);
  CHECK(d.retry_after() == 59min);
  // The refused unit was not counted in the minute or the day.
  CHECK(t.usage(0).used == 2);
  CHECK(t.usage(2).used == 5);
  clock.advance(59min);
  CHECK(fill(t) == 3);
  CHECK(t.usage(2).used == 8);
}

TEST_CASE("a cost larger than a window's limit is too large, and a negative cost invalid") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(100), quota_window::per_minute(10)}}, clock};
  armor::quota_tracker_decision<> d = t.try_consume(11);
  CHECK(d.status() == armor::quota_tracker_status::too_large);
  CHECK(d.code() == armor::errc::request_too_large);
  CHECK(d.window() == 1);
  CHECK(d.retry_after() == nanoseconds::max());
  d = t.try_consume(-1);
  CHECK(d.status() == armor::quota_tracker_status::invalid);
  CHECK(d.code() == armor::errc::invalid_argument);
  CHECK(t.usage(0).used == 0);
  CHECK(t.try_consume(10));
  CHECK(t.try_consume(0).status() == armor::quota_tracker_status::exhausted);
}

TEST_CASE("a zero cost is granted while a unit is left, and counts nothing") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(2)}}, clock};
  CHECK(t.try_consume(0));
  CHECK(t.try_consume(1));
  CHECK(t.try_consume(0));
  CHECK(t.usage(0).used == 1);
  CHECK(t.try_consume(1));
  CHECK_FALSE(t.try_consume(0));
  CHECK_FALSE(armor::quota_tracker_decision<>{}.code());  // granted: an empty code
  CHECK(armor::quota_tracker_decision<>{}.code() == std::error_code{});
}

// ---------------------------------------------------------------- reservations (permits)

TEST_CASE("a permit committed below its estimate gives the difference back") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(10'000)}}, clock};
  auto d = t.reserve(4000);
  REQUIRE(d);
  auto& r = d.permit();
  CHECK(r.pending());
  CHECK(r.amount() == 4000);
  CHECK(t.usage(0).used == 4000);
  CHECK(r.commit(1234) == armor::quota_tracker_status::granted);
  CHECK_FALSE(r.pending());
  CHECK(t.usage(0).used == 1234);
  CHECK(r.commit(1) == armor::quota_tracker_status::granted);  // committed already: no effect
  CHECK(t.usage(0).used == 1234);
  r.cancel();  // nor does a cancel after the commit
  CHECK(t.usage(0).used == 1234);
}

TEST_CASE("a permit committed above its estimate counts the overrun, past the limit if need be") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(1000), quota_window::per_hour(600)}}, clock};
  auto r = t.reserve(500).permit();
  REQUIRE(r.pending());
  CHECK(r.commit(1500) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 1500);
  CHECK(t.usage(1).used == 1500);
  CHECK(t.usage(0).remaining() == 0);
  CHECK(t.usage(0).fraction() == 1.5);
  CHECK(t.usage(0).exhausted_in == 0ns);
  CHECK_FALSE(t.try_consume(0));
  CHECK(t.try_consume().used() == 1500);
}

TEST_CASE("a permit committed with a negative cost counts zero, and commit() keeps the estimate") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(100)}}, clock};
  auto r = t.reserve(40).permit();
  CHECK(r.commit(-5) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 0);
  auto same = t.reserve(40).permit();
  CHECK(same.commit(40) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 40);
  auto kept = t.reserve(25).permit();
  kept.commit();
  CHECK_FALSE(kept.pending());
  CHECK(t.usage(0).used == 65);
}

TEST_CASE("a permit cancelled, or dropped uncommitted, gives everything back") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(10), quota_window::rolling(10, 1h, 6)}}, clock};
  {
    auto d = t.reserve(6);
    REQUIRE(d);
    CHECK(t.usage(0).used == 6);
    CHECK(t.usage(1).used == 6);
  }  // the decision held the permit: dropped with it
  CHECK(t.usage(0).used == 0);
  CHECK(t.usage(1).used == 0);
  {
    auto r = t.reserve(6).permit();  // moved out of the decision, then dropped
    CHECK(t.usage(0).used == 6);
  }
  CHECK(t.usage(0).used == 0);
  auto r = t.reserve(10).permit();
  CHECK_FALSE(t.reserve(1));
  r.cancel();
  CHECK_FALSE(r.pending());
  CHECK(t.usage(0).used == 0);
  auto kept = t.reserve(7).permit();
  kept.commit();
  { auto gone = std::move(kept); }  // committed: dropping it gives nothing back
  CHECK(t.usage(0).used == 7);
  // Move assignment cancels what the target held.
  auto a = t.reserve(1).permit();
  auto b = t.reserve(2).permit();
  CHECK(t.usage(0).used == 10);
  a = std::move(b);
  CHECK(t.usage(0).used == 9);
  CHECK(a.amount() == 2);
  CHECK_FALSE(b.pending());
}

TEST_CASE("a refused reservation holds nothing and tells why") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 23h));
  tracker t{{.windows = {quota_window::per_day(3)}}, clock};
  auto ok = t.reserve(3);
  auto d = t.reserve(1);
  CHECK_FALSE(d);
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.code() == armor::errc::quota_exhausted);
  CHECK(d.retry_after() == 1h);
  CHECK(d.window() == 0);
  CHECK_FALSE(d.permit().pending());
  CHECK(d.permit().commit(1) == armor::quota_tracker_status::exhausted);  // says why, counts nothing
  CHECK(t.usage(0).used == 3);
  auto big = t.reserve(4);
  CHECK(big.code() == armor::errc::request_too_large);
  CHECK(std::move(big).permit().commit(4) == armor::quota_tracker_status::too_large);
  CHECK(t.usage(0).used == 3);
}

TEST_CASE("units given back after their period ended are not given to the next period") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 23h + 59min));
  tracker t{{.windows = {quota_window::per_day(10), quota_window::rolling(10, 2min, 2)}}, clock};
  auto r = t.reserve(8).permit();
  REQUIRE(r.pending());
  clock.advance(2min);  // a new day; the rolling bucket is still counted (2 to 3 minutes)
  CHECK_FALSE(t.try_consume(3));
  CHECK(t.try_consume(2));
  r.cancel();
  CHECK(t.usage(0).used == 2);  // the new day keeps its 2
  CHECK(t.usage(1).used == 2);  // the rolling window got its 8 back
  clock.advance(1min);
  auto late = t.reserve(2).permit();
  clock.advance(3min);
  late.cancel();  // its bucket has left the rolling window
  CHECK(t.usage(1).used == 0);
}

TEST_CASE("an overrun committed after the period ended is counted in the current period") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 23h + 59min));
  tracker t{{.windows = {quota_window::per_day(100)}}, clock};
  auto r = t.reserve(10).permit();
  clock.advance(2min);
  CHECK(r.commit(30) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 20);
}

TEST_CASE("charge counts units spent without asking, past the limit") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(10)}}, clock};
  CHECK(t.charge(25) == armor::quota_tracker_status::granted);
  CHECK(t.charge(0) == armor::quota_tracker_status::granted);
  CHECK(t.charge(-1) == armor::quota_tracker_status::invalid);
  CHECK(t.usage(0).used == 25);
  CHECK(t.charge(std::numeric_limits<std::int64_t>::max()) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == (std::int64_t{1} << 40) - 2);  // saturates
}

// ---------------------------------------------------------------- usage

TEST_CASE("usage reports used, remaining, percentage, time until reset and projected exhaustion") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 6h));
  tracker t{{.windows = {quota_window::per_day(100)}}, clock};
  armor::quota_usage u = t.usage(0);
  CHECK(u.limit == 100);
  CHECK(u.used == 0);
  CHECK(u.remaining() == 100);
  CHECK(u.percent() == 0.0);
  CHECK(u.resets_in == 18h);
  CHECK(u.resets_at == utc(sys_days{2024y / June / 16}));
  CHECK_FALSE(u.exhausted_in.has_value());  // nothing used: no rate

  CHECK(t.try_consume(25));  // 25 in 6 h: 75 more take 18 h, exactly the reset
  u = t.usage(0);
  CHECK(u.used == 25);
  CHECK(u.remaining() == 75);
  CHECK(u.percent() == 25.0);
  CHECK_FALSE(u.exhausted_in.has_value());

  CHECK(t.try_consume(25));  // 50 in 6 h: the other 50 take 6 h
  u = t.usage(0);
  CHECK(u.exhausted_in == 6h);
  clock.advance(2h);  // 50 in 8 h: 50 more take 8 h
  CHECK(t.usage(0).exhausted_in == 8h);
  CHECK(t.usage(0).resets_in == 16h);
}

TEST_CASE("usage of a rolling window") {
  const auto start = utc(sys_days{2024y / June / 15}, 6h);
  const auto clock = clock_at(start);
  tracker t{{.windows = {quota_window::rolling(100, 1h, 4)}}, clock};
  CHECK(t.usage(0).resets_in == 0ns);
  CHECK(t.usage(0).resets_at == start);
  CHECK(t.try_consume(20));
  clock.advance(30min);
  CHECK(t.try_consume(20));  // 40 in 30 min: 60 more in 45 min
  const armor::quota_usage u = t.usage(0);
  CHECK(u.used == 40);
  CHECK(u.resets_in == 45min);  // the first bucket (06:00..06:15) leaves at 07:15
  CHECK(u.exhausted_in == 45min);
}

TEST_CASE("usage of a window that does not exist is refused") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker t{{.windows = {quota_window::per_day(1)}}, clock};
  REQUIRE_THROWS_AS(t.usage(1), armor::error);
}

// ---------------------------------------------------------------- alerts

TEST_CASE("alerts fire once per threshold and period, in order") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(50)}}, clock, armor::memory_quota_storage{},
                         std::ref(heard)};
  for (int i = 0; i < 39; ++i) REQUIRE(t.try_consume());
  CHECK(heard.alerts.empty());
  CHECK(t.try_consume());  // 40 = 80 %
  REQUIRE(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].threshold == 0.8);
  CHECK(heard.alerts[0].used == 40);
  CHECK(heard.alerts[0].limit == 50);
  CHECK(heard.alerts[0].window == 0);
  CHECK(heard.alerts[0].resets_in == 12h);
  for (int i = 0; i < 4; ++i) REQUIRE(t.try_consume());
  CHECK(heard.alerts.size() == 1);
  CHECK(t.try_consume(2));  // 46: 90 % crossed on the way
  REQUIRE(heard.alerts.size() == 2);
  CHECK(heard.alerts[1].threshold == 0.9);
  CHECK(t.try_consume(4));  // 50: 100 %
  REQUIRE(heard.alerts.size() == 3);
  CHECK(heard.alerts[2].threshold == 1.0);
  CHECK_FALSE(t.try_consume());
  CHECK(t.charge(5) == armor::quota_tracker_status::granted);
  CHECK(heard.alerts.size() == 3);

  clock.advance(12h);  // the next day: everything again
  CHECK(t.try_consume(50));  // all three at once, lowest first
  REQUIRE(heard.alerts.size() == 6);
  CHECK(heard.alerts[3].threshold == 0.8);
  CHECK(heard.alerts[4].threshold == 0.9);
  CHECK(heard.alerts[5].threshold == 1.0);
  CHECK(heard.alerts[5].used == 50);
}

TEST_CASE("alerts are per window, with custom thresholds, and an overrun can fire them") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(1000), quota_window::per_hour(100)}, .alerts = {0.5, 0.25}},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  auto r = t.reserve(10).permit();
  CHECK(heard.alerts.empty());
  CHECK(r.commit(60) == armor::quota_tracker_status::granted);  // the hour reaches 25 % and 50 %
  REQUIRE(heard.alerts.size() == 2);
  CHECK(heard.alerts[0].window == 1);
  CHECK(heard.alerts[0].threshold == 0.25);
  CHECK(heard.alerts[1].threshold == 0.5);
  CHECK(heard.alerts[1].used == 60);
  CHECK(heard.alerts[1].resets_in == 1h);
  // A release does not re-arm a threshold in the same period.
  auto again = t.reserve(30).permit();
  again.cancel();
  CHECK(t.try_consume(30));
  CHECK(heard.alerts.size() == 2);
}

TEST_CASE("thresholds are whole units, rounded up, without floating-point surprises") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(3), quota_window::per_day(10)}, .alerts = {0.7, 0.3}},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  CHECK(t.try_consume(2));  // 3 * 0.3 = 0.9 -> 1 unit; 3 * 0.7 = 2.1 -> 3 units; 10 * 0.3 = 3 exactly
  REQUIRE(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].window == 0);
  CHECK(heard.alerts[0].threshold == 0.3);
  CHECK(t.try_consume(1));
  REQUIRE(heard.alerts.size() == 3);
  CHECK(heard.alerts[1].window == 0);
  CHECK(heard.alerts[1].threshold == 0.7);
  CHECK(heard.alerts[2].window == 1);
  CHECK(heard.alerts[2].threshold == 0.3);
}

TEST_CASE("a rolling window re-arms its alerts once per span of its length") {
  const auto start = utc(sys_days{2024y / June / 15}, 12h);
  const auto clock = clock_at(start);
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::rolling(10, 1h, 4)}, .alerts = {0.5}}, clock,
                         armor::memory_quota_storage{}, std::ref(heard)};
  CHECK(t.try_consume(5));
  CHECK(t.try_consume(1));
  CHECK(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].resets_in == 75min);  // the bucket 12:00..12:15 leaves at 13:15
  clock.advance(1h);  // 13:00: the next alert period; the 6 units still count
  CHECK(t.try_consume(1));
  REQUIRE(heard.alerts.size() == 2);  // still above 50 %: said again, once
  CHECK(heard.alerts[1].used == 7);
  CHECK(heard.alerts[1].resets_in == 15min);
  CHECK(t.try_consume(1));
  CHECK(heard.alerts.size() == 2);
}

TEST_CASE("alerts follow settled use: a reservation counts for alerts once committed") {
  // Issue 17, item 4: reserve(85) of 100 fired the 80 % alert, commit(10)
  // left 10 used, and the real crossing later was never reported.
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(100)}}, clock, armor::memory_quota_storage{},
                         std::ref(heard)};
  auto r = t.reserve(85);
  REQUIRE(r);
  CHECK(t.usage(0).used == 85);  // the reservation holds the units...
  CHECK(heard.alerts.empty());   // ...but is not yet use worth an alert
  CHECK(r.permit().commit(10) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 10);
  CHECK(heard.alerts.empty());
  CHECK(t.try_consume(69));  // 79
  CHECK(heard.alerts.empty());
  CHECK(t.try_consume(1));  // 80: the real crossing
  REQUIRE(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].threshold == 0.8);
  CHECK(heard.alerts[0].used == 80);
  CHECK(t.stats().alerts == 1);
}

TEST_CASE("a reservation's units reach an alert when the permit commits them") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(100), quota_window::per_hour(1000)}}, clock,
                         armor::memory_quota_storage{}, std::ref(heard)};
  auto a = t.reserve(85).permit();
  CHECK(heard.alerts.empty());
  a.commit();  // the estimate was the cost: 85 used
  REQUIRE(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].threshold == 0.8);
  CHECK(heard.alerts[0].used == 85);
  CHECK(heard.alerts[0].resets_in == 12h);
  auto b = t.reserve(10).permit();
  auto c = t.reserve(5).permit();  // 100 held, 85 settled
  CHECK(heard.alerts.size() == 1);
  CHECK(b.commit(7) == armor::quota_tracker_status::granted);  // 92: 90 % (the 5 held still do not count)
  REQUIRE(heard.alerts.size() == 2);
  CHECK(heard.alerts[1].threshold == 0.9);
  CHECK(heard.alerts[1].used == 92);
  c.cancel();
  CHECK(t.usage(0).used == 92);
  auto d = t.reserve(1).permit();
  CHECK(d.commit(8) == armor::quota_tracker_status::granted);  // an overrun past the estimate: 100 %
  REQUIRE(heard.alerts.size() == 3);
  CHECK(heard.alerts[2].threshold == 1.0);
  CHECK(heard.alerts[2].used == 100);
  CHECK(t.stats().alerts == 3);
}

TEST_CASE("units held by other reservations do not count towards an alert") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(100)}}, clock, armor::memory_quota_storage{},
                         std::ref(heard)};
  auto held = t.reserve(50).permit();
  CHECK(t.try_consume(40));  // 90 counted, 40 settled
  CHECK(heard.alerts.empty());
  held.cancel();
  CHECK(t.try_consume(39));  // 79
  CHECK(heard.alerts.empty());
  CHECK(t.try_consume(1));
  REQUIRE(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].used == 80);
  // In a pipeline: the reported cost is what counts.
  auto p = armor::pipeline{clock, std::ref(t)};
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(1); }, {.cost = 19});  // 81
  CHECK(heard.alerts.size() == 1);
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(9); }, {.cost = 1});  // 90
  REQUIRE(heard.alerts.size() == 2);
  CHECK(heard.alerts[1].threshold == 0.9);
  CHECK(heard.alerts[1].used == 90);
}

TEST_CASE("a crossing a commit completes with units counted after its reservation is heard at the next call") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(100)}, .alerts = {1.0}}, clock,
                         armor::memory_quota_storage{}, std::ref(heard)};
  CHECK(t.try_consume(85));
  auto x = t.reserve(10).permit();  // 95 counted: the commit alone cannot reach 100
  CHECK(t.try_consume(5));          // 100 counted, 90 settled
  x.commit();                       // 100 settled: not re-read (see docs/quota_tracker.md, Alerts)
  CHECK(heard.alerts.empty());
  CHECK_FALSE(t.try_consume(1));  // refused, and the refusing window's 100 % is heard
  REQUIRE(heard.alerts.size() == 1);
  CHECK(heard.alerts[0].used == 100);
  CHECK_FALSE(t.try_consume(1));
  CHECK(heard.alerts.size() == 1);
}

TEST_CASE("with alert_basis = reserved a reservation counts when made, and a fall below re-arms the threshold") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  recording_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(100)}, .alert_basis = armor::quota_alert_basis::reserved},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  auto r = t.reserve(85).permit();
  REQUIRE(heard.alerts.size() == 1);  // at once, on the reservation
  CHECK(heard.alerts[0].used == 85);
  CHECK(r.commit(10) == armor::quota_tracker_status::granted);  // 10 used: below 80 % again, re-armed
  CHECK(t.try_consume(69));
  CHECK(heard.alerts.size() == 1);
  CHECK(t.try_consume(1));  // 80: reported again, as the crossing it is
  REQUIRE(heard.alerts.size() == 2);
  CHECK(heard.alerts[1].threshold == 0.8);
  CHECK(heard.alerts[1].used == 80);
  // A cancel re-arms too, but only the thresholds the use fell below.
  auto big = t.reserve(15).permit();  // 95: 90 %
  REQUIRE(heard.alerts.size() == 3);
  CHECK(heard.alerts[2].threshold == 0.9);
  big.cancel();  // 80: 90 % re-armed, 80 % still reached
  CHECK(t.try_consume(9));  // 89
  CHECK(heard.alerts.size() == 3);
  CHECK(t.try_consume(1));  // 90
  REQUIRE(heard.alerts.size() == 4);
  CHECK(heard.alerts[3].threshold == 0.9);
  CHECK(t.stats().alerts == 4);
  // Otherwise still once per threshold and period.
  auto small = t.reserve(2).permit();
  small.cancel();  // 90 again: nothing fell below a threshold
  CHECK(t.try_consume(1));
  CHECK(heard.alerts.size() == 4);
}

TEST_CASE("alert_basis has a to_string and a bad value is refused by name") {
  CHECK(armor::to_string(armor::quota_alert_basis::settled) == "settled");
  CHECK(armor::to_string(armor::quota_alert_basis::reserved) == "reserved");
  CHECK(contains(refusal({.windows = {quota_window::per_day(5)}, .alert_basis = armor::quota_alert_basis{7}}),
                 "alert_basis"));
}

// ---------------------------------------------------------------- moving and sharing

TEST_CASE("moving a tracker keeps its counts and alert state") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  recording_listener heard;
  armor::quota_tracker a{{.windows = {quota_window::per_day(10)}}, clock, armor::memory_quota_storage{},
                         std::ref(heard)};
  CHECK(a.try_consume(8));
  CHECK(heard.alerts.size() == 1);
  auto b = std::move(a);
  CHECK(b.usage(0).used == 8);
  CHECK(b.try_consume(1));
  CHECK(heard.alerts.size() == 2);  // 90 %, not 80 % again
  CHECK(b.try_consume(1));
  CHECK_FALSE(b.try_consume(1));
}

// ---------------------------------------------------------------- pipeline

TEST_CASE("in a pipeline a call costs ctx.cost() and a refusal is quota_exhausted with retry_after") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 22h));
  tracker quota{{.windows = {quota_window::per_day(5)}}, clock};
  auto p = armor::pipeline{clock, std::ref(quota)};
  int calls = 0;
  CHECK(p.execute([&] { return ++calls; }, {.cost = 2}) == 1);
  CHECK(p.execute([&] { return ++calls; }, {.cost = 3}) == 2);
  auto r = p.try_execute([&] { return ++calls; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::quota_exhausted);
  CHECK(r.retry_after() == 2h);
  CHECK(calls == 2);
  try {
    (void)p.execute([&] { return ++calls; });
    FAIL("expected armor::error");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::quota_exhausted);
    CHECK(e.retry_after() == 2h);
  }
  auto big = p.try_execute([&] { return ++calls; }, {.cost = 6});
  CHECK(big.code() == armor::errc::request_too_large);
  auto negative = p.try_execute([&] { return ++calls; }, {.cost = -1});
  CHECK(negative.code() == armor::errc::invalid_argument);
  CHECK(calls == 2);
}

TEST_CASE("in a pipeline the reported cost commits the permit") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker tokens{{.windows = {quota_window::per_day(10'000)}}, clock};
  auto p = armor::pipeline{clock, std::ref(tokens)};
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(1234); }, {.cost = 4000});
  CHECK(tokens.usage(0).used == 1234);
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(5000); }, {.cost = 100});
  CHECK(tokens.usage(0).used == 6234);
  (void)p.execute([] {}, {.cost = 100});  // nothing reported: the estimate stays
  CHECK(tokens.usage(0).used == 6334);
  // A failed attempt ran: its estimate stays too, unless it reported.
  (void)p.try_execute([]() -> int { throw std::runtime_error("500"); }, {.cost = 6});
  CHECK(tokens.usage(0).used == 6340);
  (void)p.try_execute(
      [](const armor::context& ctx) -> int {
        ctx.report_cost(0);
        throw std::runtime_error("refused before any token was used");
      },
      {.cost = 60});
  CHECK(tokens.usage(0).used == 6340);
}

TEST_CASE("in a pipeline an attempt that never ran gives its units back") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker quota{{.windows = {quota_window::per_day(10)}}, clock};
  armor_test::rejecting_policy breaker{armor::errc::circuit_open, 30s};
  auto p = armor::pipeline{clock, std::ref(quota), std::ref(breaker)};
  for (int i = 0; i < 20; ++i) {
    auto r = p.try_execute([] { return 1; }, {.cost = 3});
    CHECK(r.code() == armor::errc::circuit_open);
  }
  CHECK(quota.usage(0).used == 0);
  // An expired budget stops the call before the operation: given back too.
  auto direct = armor::pipeline{clock, std::ref(quota)};
  auto late = direct.try_execute([] { return 1; }, {.cost = 3, .timeout = 0s});
  CHECK(late.code() == armor::errc::deadline_exceeded);
  CHECK(quota.usage(0).used == 0);
}

// Issue 17, item 6: one cost per call made a request quota refuse a call
// priced in micro-dollars (request_too_large); each layer now picks its cost.
TEST_CASE("200 requests a day and $5.00 a day in one pipeline: each quota counts its own cost") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  tracker requests{{.windows = {quota_window::per_day(200)}, .cost = armor::cost_source::per_call()}, clock};
  tracker dollars{{.windows = {quota_window::per_day(5'000'000)}}, clock};  // micro-dollars: the call's cost
  auto p = armor::pipeline{clock, std::ref(requests), std::ref(dollars)};
  int calls = 0;

  auto r = p.try_execute([&] { return ++calls; }, {.cost = 40'000});
  REQUIRE(r.has_value());
  CHECK(requests.usage(0).used == 1);
  CHECK(dollars.usage(0).used == 40'000);

  SECTION("the dollar quota refuses when the money is spent; the request it reserved is given back") {
    for (int i = 1; i < 125; ++i) REQUIRE(p.try_execute([&] { return ++calls; }, {.cost = 40'000}).has_value());
    CHECK(requests.usage(0).used == 125);
    CHECK(dollars.usage(0).used == 5'000'000);
    auto refused = p.try_execute([&] { return ++calls; }, {.cost = 40'000});
    CHECK(refused.code() == armor::errc::quota_exhausted);
    CHECK(refused.retry_after() == 12h);
    CHECK(calls == 125);
    CHECK(dollars.stats().exhausted == 1);
    CHECK(requests.stats().exhausted == 0);
    CHECK(requests.usage(0).used == 125);  // the refused call's request went back
  }
  SECTION("the request quota refuses when the requests are spent, whatever the dollars") {
    for (int i = 1; i < 200; ++i) REQUIRE(p.try_execute([&] { return ++calls; }, {.cost = 100}).has_value());
    CHECK(requests.usage(0).used == 200);
    CHECK(dollars.usage(0).used == 40'000 + 199 * 100);
    auto refused = p.try_execute([&] { return ++calls; }, {.cost = 100});
    CHECK(refused.code() == armor::errc::quota_exhausted);
    CHECK(requests.stats().exhausted == 1);
    CHECK(dollars.stats().exhausted == 0);
    CHECK(dollars.usage(0).used == 40'000 + 199 * 100);  // never reached
    CHECK(calls == 200);
  }
  SECTION("a call too large for the budget is the dollar quota's request_too_large") {
    auto big = p.try_execute([&] { return ++calls; }, {.cost = 5'000'001});
    CHECK(big.code() == armor::errc::request_too_large);
    CHECK(dollars.stats().too_large == 1);
    CHECK(requests.stats().too_large == 0);
    CHECK(requests.usage(0).used == 1);
  }
}

TEST_CASE("the reported cost settles only the quota that counts that cost") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker requests{{.windows = {quota_window::per_day(200)}, .cost = armor::cost_source::per_call()}, clock};
  tracker dollars{{.windows = {quota_window::per_day(5'000'000)}}, clock};
  auto p = armor::pipeline{clock, std::ref(requests), std::ref(dollars)};
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(12'345); }, {.cost = 40'000});
  CHECK(dollars.usage(0).used == 12'345);  // the estimate replaced by the real cost
  CHECK(requests.usage(0).used == 1);      // one request, whatever it cost
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(0); }, {.cost = 40'000});
  CHECK(dollars.usage(0).used == 12'345);
  CHECK(requests.usage(0).used == 2);

  SECTION("with three units: requests, dollars in the main cost, LLM tokens in a slot") {
    constexpr auto llm_tokens = armor::cost_source::slot(1);
    tracker tokens{{.windows = {quota_window::per_minute(100'000)}, .cost = llm_tokens}, clock};
    auto q = armor::pipeline{clock, std::ref(requests), std::ref(dollars), std::ref(tokens)};
    (void)q.execute(
        [&](const armor::context& ctx) {
          CHECK(ctx.cost(llm_tokens) == 4'000);
          ctx.report_cost(llm_tokens, 1'500);  // the response's token count: settles `tokens` only
        },
        {.cost = 40'000, .costs = {0, 4'000}});
    CHECK(tokens.usage(0).used == 1'500);
    CHECK(dollars.usage(0).used == 12'345 + 40'000);  // no dollar cost reported: the estimate stays
    CHECK(requests.usage(0).used == 3);
  }
}

TEST_CASE("by default a quota counts the call's cost, as before") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker a{{.windows = {quota_window::per_day(100)}}, clock};
  tracker b{{.windows = {quota_window::per_day(100)}, .cost = armor::cost_source::main()}, clock};
  CHECK(a.options().cost == armor::cost_source::main());
  auto p = armor::pipeline{clock, std::ref(a), std::ref(b)};
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(30); }, {.cost = 40, .costs = {7, 7, 7}});
  CHECK(a.usage(0).used == 30);
  CHECK(b.usage(0).used == 30);
  auto big = p.try_execute([] { return 1; }, {.cost = 101});
  CHECK(big.code() == armor::errc::request_too_large);
}

TEST_CASE("a quota's cost must select a slot a call has") {
  CHECK(refusal({.windows = {quota_window::per_day(10)}, .cost = armor::cost_source::slot(armor::cost_slots - 1)}) ==
        "(accepted)");
  CHECK(refusal({.windows = {quota_window::per_day(10)}, .cost = armor::cost_source::per_call()}) == "(accepted)");
  const std::string m = refusal({.windows = {quota_window::per_day(10)}, .cost = armor::cost_source::slot(3)});
  CHECK(contains(m, "armor::quota_tracker: cost selects cost_source::slot(3)"));
  CHECK(contains(m, "call_options::costs"));
}

TEST_CASE("a refusal ends the call at once: a backoff around it does not retry") {
  const auto start = utc(sys_days{2024y / June / 15}, 22h);
  const auto clock = clock_at(start);
  tracker quota{{.windows = {quota_window::per_day(1)}}, clock};
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 5}}, std::ref(quota)};
  CHECK(p.execute([] { return 1; }) == 1);
  auto r = p.try_execute([] { return 1; });
  CHECK(r.code() == armor::errc::quota_exhausted);
  CHECK(r.retry_after() == 2h);
  CHECK(clock.now().time_since_epoch() == start.time_since_epoch());  // nobody slept
}

TEST_CASE("with retryable_within a short refusal is waited for by an outer backoff") {
  const auto begin = utc(sys_days{2024y / June / 15}, 12h + 59s);
  const auto clock = clock_at(begin);
  tracker quota{{.windows = {quota_window::per_minute(1), quota_window::per_day(3)}, .retryable_within = 2min}, clock};
  // The backoff must be willing to wait that long for a refusal too.
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .max_retry_after = 5min, .max_refusal_wait = 5min}},
                           std::ref(quota)};
  CHECK(p.execute([] { return 1; }) == 1);
  CHECK(p.execute([] { return 2; }) == 2);  // waited 1 s for the next minute
  CHECK(clock.now().time_since_epoch() == (begin + 1s).time_since_epoch());
  CHECK(p.execute([] { return 3; }) == 3);  // waited a minute
  // The day is spent (and the minute too): the longer wait, 11 h 58 min, is
  // reported, and is not worth waiting for.
  auto r = p.try_execute([] { return 4; });
  CHECK(r.code() == armor::errc::quota_exhausted);
  CHECK(r.retry_after() == 11h + 58min);
  CHECK(clock.now().time_since_epoch() == (begin + 1s + 1min).time_since_epoch());
}

TEST_CASE("one tracker shared by two pipelines through std::ref counts both") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  tracker quota{{.windows = {quota_window::per_hour(3)}}, clock};
  auto a = armor::pipeline{clock, std::ref(quota)};
  auto b = armor::pipeline{clock, armor::deadline{1s}, std::ref(quota)};
  CHECK(a.try_execute([] { return 1; }).has_value());
  CHECK(b.try_execute([] { return 1; }).has_value());
  CHECK(a.try_execute([] { return 1; }).has_value());
  CHECK(b.try_execute([] { return 1; }).code() == armor::errc::quota_exhausted);
  CHECK(quota.usage(0).used == 3);
}

TEST_CASE("a tracker held by value in a pipeline is reached through layer()") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}));
  auto p = armor::pipeline{clock, tracker{{.windows = {quota_window::per_hour(2)}}, clock}};
  CHECK(p.try_execute([] { return 1; }).has_value());
  CHECK(p.layer<0>().usage(0).used == 1);
}

TEST_CASE("stats count refusals by reason and alerts fired, with or without a listener") {
  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 12h));
  tracker t{{.windows = {quota_window::per_day(10), quota_window::per_minute(4)}}, clock};
  CHECK(t.stats().rejected() == 0);
  CHECK(t.try_consume(3));  // 3 of 4 a minute: below 80 % (thresholds round up: ceil(3.2) = 4)
  CHECK(t.stats().alerts == 0);
  CHECK(t.try_consume(1));  // the minute is full: 80 %, 90 % and 100 % of it at once
  CHECK(t.stats().alerts == 3);
  CHECK_FALSE(t.try_consume(1));  // exhausted
  CHECK_FALSE(t.try_consume(1));
  CHECK_FALSE(t.try_consume(11));  // larger than the day's limit
  CHECK_FALSE(t.try_consume(-1));
  {
    auto r = t.reserve(1);  // a refused reservation counts as a refusal too
    CHECK_FALSE(r);
  }
  const armor::quota_tracker_stats s = t.stats();
  CHECK(s.exhausted == 3);
  CHECK(s.too_large == 1);
  CHECK(s.invalid == 1);
  CHECK(s.unavailable == 0);
  CHECK(s.rejected() == 5);
  CHECK(s.alerts == 3);

  clock.advance(1min);  // a new minute: its alerts fire again, the day's 80 % too
  CHECK(t.try_consume(4));
  CHECK(t.stats().alerts == 7);
  CHECK(t.stats().exhausted == 3);  // grants count nothing

  tracker moved{std::move(t)};
  CHECK(moved.stats().alerts == 7);
  CHECK(moved.stats().rejected() == 5);
}

// ---------------------------------------------------------------- the one shape (decision, event, stats, names)

TEST_CASE("a quota decision has the shape of every armor decision") {
  static_assert(armor::decision_like<armor::quota_tracker_decision<>>);
  static_assert(armor::decision_like<armor::quota_tracker_decision<armor::quota_tracker_permit<>>>);
  static_assert(!std::is_convertible_v<armor::quota_tracker_decision<>, bool>);
  static_assert(std::is_nothrow_copy_constructible_v<armor::quota_tracker_decision<>>);
  static_assert(!std::is_copy_constructible_v<armor::quota_tracker_decision<armor::quota_tracker_permit<>>>);
  static_assert(std::is_nothrow_move_constructible_v<armor::quota_tracker_decision<armor::quota_tracker_permit<>>>);

  const auto clock = clock_at(utc(sys_days{2024y / June / 15}, 23h));
  tracker t{{.windows = {quota_window::per_day(3), quota_window::per_minute(100)}}, clock};
  // Granted: true, no code, no wait.
  const armor::quota_tracker_decision<> granted = t.try_consume(2);
  CHECK(static_cast<bool>(granted));
  CHECK(granted.status() == armor::quota_tracker_status::granted);
  CHECK_FALSE(granted.code());
  CHECK(granted.retry_after() == 0ns);
  CHECK(granted.window() == 0);
  CHECK(granted.used() == 0);
  CHECK(granted.limit() == 0);
  // Exhausted: quota_exhausted, retry after the refusing window resets.
  const auto exhausted = t.try_consume(2);
  CHECK_FALSE(exhausted);
  CHECK(exhausted.code() == armor::errc::quota_exhausted);
  CHECK(exhausted.code() == std::error_code(armor::errc::quota_exhausted));
  CHECK(exhausted.retry_after() == 1h);
  CHECK(exhausted.used() == 2);
  CHECK(exhausted.limit() == 3);
  // Too large and invalid: no wait helps.
  const auto too_large = t.try_consume(4);
  CHECK(too_large.code() == armor::errc::request_too_large);
  CHECK(too_large.retry_after() == nanoseconds::max());
  const auto invalid = t.try_consume(-3);
  CHECK(invalid.code() == armor::errc::invalid_argument);
  CHECK(invalid.retry_after() == nanoseconds::max());
  // A granted reservation holds its units in the permit.
  auto d = t.reserve(1);
  REQUIRE(d);
  CHECK_FALSE(d.code());
  CHECK(d.retry_after() == 0ns);
  CHECK(d.permit().pending());
  CHECK(d.permit().amount() == 1);
  const auto& cd = d;
  CHECK(cd.permit().pending());
  auto p = std::move(d).permit();
  CHECK(p.pending());
  CHECK_FALSE(d.permit().pending());  // NOLINT(bugprone-use-after-move): moved out, empty
  CHECK(t.usage(0).used == 3);
}

/// A listener taken by value: a noexcept lambda that counts into a shared
/// vector (the tracker keeps its own copy).
TEST_CASE("the listener hears one quota_tracker_event per threshold, from any noexcept callable") {
  const auto start = utc(sys_days{2024y / June / 15}, 18h);
  const auto clock = clock_at(start);
  auto heard = std::make_shared<std::vector<armor::quota_tracker_event>>();
  auto listener = [heard](const armor::quota_tracker_event& e) noexcept { heard->push_back(e); };
  static_assert(armor::listener_for<decltype(listener), armor::quota_tracker_event>);
  armor::quota_tracker t{{.windows = {quota_window::per_hour(100), quota_window::per_day(10)}, .alerts = {0.5, 1.0}},
                         clock, armor::memory_quota_storage{}, listener};
  static_assert(std::is_same_v<decltype(t)::listener_type, decltype(listener)>);
  static_assert(std::is_same_v<decltype(t)::event_type, armor::quota_tracker_event>);
  static_assert(noexcept(t.try_consume()));
  CHECK(t.try_consume(4));
  CHECK(heard->empty());
  CHECK(t.try_consume(6));  // the day: 50 % and 100 % at once, lowest first
  REQUIRE(heard->size() == 2);
  const armor::quota_tracker_event& half = (*heard)[0];
  CHECK(half.window == 1);
  CHECK(half.threshold == 0.5);
  CHECK(half.used == 10);
  CHECK(half.limit == 10);
  CHECK(half.resets_in == 6h);
  CHECK(half.resets_at == utc(sys_days{2024y / June / 16}));
  CHECK((*heard)[1].threshold == 1.0);
  CHECK((*heard)[1].resets_at == half.resets_at);
  CHECK(t.stats().alerts == 2);

  // A throwing callable, or one of the wrong signature, is no listener.
  auto throwing = [](const armor::quota_tracker_event&) {};
  static_assert(!armor::listener_for<decltype(throwing), armor::quota_tracker_event>);
  struct named_member {
    void on_quota_alert(const armor::quota_tracker_event&) noexcept {}
  };
  static_assert(!armor::listener_for<named_member, armor::quota_tracker_event>);
  static_assert(armor::listener_for<armor::no_listener, armor::quota_tracker_event>);
  static_assert(armor::listener_for<std::reference_wrapper<recording_listener>, armor::quota_tracker_event>);
}

TEST_CASE("without a listener the tracker costs no byte for one") {
  static_assert(sizeof(armor::quota_tracker<armor::manual_clock>) ==
                sizeof(armor::quota_tracker<armor::manual_clock, armor::memory_quota_storage,
                                            std::reference_wrapper<recording_listener>>) -
                    sizeof(void*));
}

TEST_CASE("every public quota enum has a to_string naming its enumerator") {
  using armor::to_string;
  static_assert(to_string(armor::quota_tracker_status::granted) == "granted");
  CHECK(to_string(armor::quota_tracker_status::exhausted) == "exhausted");
  CHECK(to_string(armor::quota_tracker_status::too_large) == "too_large");
  CHECK(to_string(armor::quota_tracker_status::invalid) == "invalid");
  CHECK(to_string(armor::quota_tracker_status::unavailable) == "unavailable");
  CHECK(to_string(static_cast<armor::quota_tracker_status>(99)) == "unknown");
  static_assert(to_string(armor::quota_window_kind::fixed) == "fixed");
  CHECK(to_string(armor::quota_window_kind::week) == "week");
  CHECK(to_string(armor::quota_window_kind::month) == "month");
  CHECK(to_string(armor::quota_window_kind::rolling) == "rolling");
  CHECK(to_string(static_cast<armor::quota_window_kind>(9)) == "unknown");
  static_assert(to_string(armor::quota_storage_status::consumed) == "consumed");
  CHECK(to_string(armor::quota_storage_status::refused) == "refused");
  CHECK(to_string(armor::quota_storage_status::unavailable) == "unavailable");
  CHECK(to_string(armor::quota_storage_status::deadline_exceeded) == "deadline_exceeded");
  // Found by ADL too, as fmt's generic formatter calls it.
  const armor::quota_tracker_status s = armor::quota_tracker_status::exhausted;
  CHECK(to_string(s) == "exhausted");
}

TEST_CASE("quota stats and usage describe their own metric families") {
  static_assert(armor::described_stats<armor::quota_tracker_stats>);
  static_assert(armor::described_stats<armor::quota_usage>);
  constexpr auto f = armor::quota_tracker_stats::fields();
  static_assert(std::tuple_size_v<decltype(f)> == 6);
  std::vector<std::string> seen;
  const armor::quota_tracker_stats s{
      .exhausted = 3, .too_large = 1, .invalid = 2, .unavailable = 4, .alerts = 7, .forecast_alerts = 5};
  armor::detail::for_each_field<armor::quota_tracker_stats>([&](const auto& field) {
    seen.push_back(std::string(field.name) + " " + std::string(field.metric) + " " + std::string(field.label_name) +
                   "=" + std::string(field.label_value) + " " + std::string(armor::to_string(field.type)) + " " +
                   std::to_string(s.*field.member));
  });
  CHECK(seen == std::vector<std::string>{
                    "exhausted armor_quota_rejected_total reason=exhausted counter 3",
                    "too_large armor_quota_rejected_total reason=too_large counter 1",
                    "invalid armor_quota_rejected_total reason=invalid counter 2",
                    "unavailable armor_quota_rejected_total reason=unavailable counter 4",
                    "alerts armor_quota_alerts_total = counter 7",
                    "forecast_alerts armor_quota_forecast_alerts_total = counter 5",
                });
  CHECK(std::get<0>(f).help == "Consumptions the quota tracker refused, by reason.");
  CHECK(std::get<4>(f).help == "Quota alerts fired (once per threshold, window and period).");

  constexpr auto u = armor::quota_usage::fields();
  CHECK(std::get<0>(u).metric == "armor_quota_used");
  CHECK(std::get<0>(u).type == armor::metric_type::gauge);
  CHECK(std::get<1>(u).metric == "armor_quota_limit");
  CHECK(std::get<2>(u).metric == "armor_quota_reset_seconds");
  CHECK(std::get<2>(u).help == "Seconds until the quota window resets (rolling: until its oldest units expire).");
  const armor::quota_usage usage{.used = 40, .limit = 50, .resets_in = 90s};
  CHECK(armor::detail::metric_value(usage.*std::get<2>(u).member) == 90.0);
  CHECK(std::get<3>(u).type == armor::metric_type::none);  // exhausted_in: printed, not exported
}

TEST_CASE("a call's remaining time becomes a storage deadline; nanoseconds::max() is none") {
  using armor::quota_deadline;
  // No deadline: max(), without reading a clock.
  CHECK(armor::detail::quota_deadline_after(nanoseconds::max()) == quota_deadline::max());
  // A deadline too far to represent saturates just below "none".
  CHECK(armor::detail::quota_deadline_after(nanoseconds::max() - 1ns) == quota_deadline::max() - 1ns);
  // Otherwise now + left (in the past for a negative left).
  const auto before = steady_clock::now();
  const quota_deadline in_a_second = armor::detail::quota_deadline_after(1s);
  const quota_deadline gone = armor::detail::quota_deadline_after(-1s);
  const auto after = steady_clock::now();
  CHECK(in_a_second >= before + 1s);
  CHECK(in_a_second <= after + 1s);
  CHECK(gone <= after - 1s);
  CHECK(gone >= before - 1s);
}

namespace {

/// The alert threshold in units as quota_tracker computed it per call until
/// it precomputed them (long double, the nearest integer within a relative
/// 1e-9, else rounded up; at least 1): the reference the precomputed units
/// must equal.
std::int64_t reference_threshold_units(double fraction, std::int64_t limit) {
  const long double exact = static_cast<long double>(fraction) * static_cast<long double>(limit);
  const long double nearest = std::nearbyint(exact);
  const long double units =
      std::fabs(exact - nearest) <= 1e-9L * std::max<long double>(exact, 1.0L) ? nearest : std::ceil(exact);
  return std::max<std::int64_t>(static_cast<std::int64_t>(units), 1);
}

/// Consumes one unit at a time up to the limit; the unit (use) at which each
/// threshold was heard, in the order of `thresholds` (0: never heard).
std::vector<std::int64_t> units_heard(armor::quota_tracker<armor::manual_clock, armor::memory_quota_storage,
                                                           std::reference_wrapper<recording_listener>>& t,
                                      recording_listener& heard, const std::vector<double>& thresholds,
                                      std::int64_t limit) {
  heard.alerts.clear();
  for (std::int64_t n = 0; n < limit; ++n) REQUIRE(t.try_consume(1));
  std::vector<std::int64_t> at(thresholds.size(), 0);
  for (const armor::quota_tracker_event& e : heard.alerts) {
    for (std::size_t k = 0; k < thresholds.size(); ++k) {
      if (e.threshold == thresholds[k] && at[k] == 0) at[k] = e.used;
    }
  }
  return at;
}

}  // namespace

TEST_CASE("precomputed thresholds fire at the same unit as the per-call rounding did, at every small limit") {
  const std::vector<double> thresholds{0.1 * 3, 0.55, 0.8, 0.9, 1.0 / 3, 0.7, 1.0};
  for (std::int64_t limit = 1; limit <= 60; ++limit) {
    CAPTURE(limit);
    std::vector<std::int64_t> expected;
    for (const double f : thresholds) expected.push_back(reference_threshold_units(f, limit));
    recording_listener heard;
    armor::quota_tracker t{{.windows = {quota_window::per_day(limit)}, .alerts = thresholds},
                           clock_at(utc(sys_days{2024y / June / 15})), armor::memory_quota_storage{},
                           std::ref(heard)};
    CHECK(units_heard(t, heard, thresholds, limit) == expected);
    // The same limit set by reconfigure(), from another one.
    recording_listener heard2;
    armor::quota_tracker t2{{.windows = {quota_window::per_day(limit + 13)}, .alerts = thresholds},
                            clock_at(utc(sys_days{2024y / June / 15})), armor::memory_quota_storage{},
                            std::ref(heard2)};
    t2.reconfigure({.windows = {quota_window::per_day(limit)}, .alerts = thresholds});
    CHECK(units_heard(t2, heard2, thresholds, limit) == expected);
  }
  // The brief's case: 80 % of 7 is 5.6, heard at the 6th unit.
  CHECK(reference_threshold_units(0.8, 7) == 6);
}

TEST_CASE("precomputed thresholds round a half unit at a large limit as the per-call rounding did") {
  // 0.5 x 2'000'000'001 = 1'000'000'000.5: within the relative tolerance of
  // both neighbours; the nearest-even rounding gave 1'000'000'000. And
  // 0.5 x 2'000'000'003 gave 1'000'000'002.
  for (const std::int64_t limit : {std::int64_t{2'000'000'001}, std::int64_t{2'000'000'003}}) {
    const std::int64_t expected = reference_threshold_units(0.5, limit);
    CHECK(expected == (limit == 2'000'000'001 ? 1'000'000'000 : 1'000'000'002));
    recording_listener heard;
    armor::quota_tracker t{{.windows = {quota_window::per_day(limit)}, .alerts = {0.5, 1.0}},
                           clock_at(utc(sys_days{2024y / June / 15})), armor::memory_quota_storage{},
                           std::ref(heard)};
    REQUIRE(t.charge(expected - 1) == armor::quota_tracker_status::granted);
    CHECK(heard.alerts.empty());
    REQUIRE(t.try_consume(1));
    REQUIRE(heard.alerts.size() == 1);
    CHECK(heard.alerts[0].used == expected);
    CHECK(heard.alerts[0].threshold == 0.5);
  }
}

// ---------------------------------------------------------------- packed counters (issue 23)
//
// The memory backend keeps the counts of several fixed windows in one
// 16-byte word (memory.hpp, "Packed counters") and try_consume() has a
// one-CAS path over it. The reference below is the same storage without
// bind_calendar(): a word per window, the general path, as before.

namespace {

/// memory_quota_storage that never packs (and is not the tracker's fast path).
struct unpacked_memory : armor::memory_quota_storage {
  void bind_calendar(std::span<const armor::detail::quota_cycle>) = delete;
};

using plain_tracker = armor::quota_tracker<armor::manual_clock, unpacked_memory>;

struct listener_log {
  std::shared_ptr<std::vector<std::tuple<std::size_t, double, std::int64_t, int>>> events =
      std::make_shared<std::vector<std::tuple<std::size_t, double, std::int64_t, int>>>();
  void operator()(const armor::quota_tracker_event& e) const noexcept {
    events->emplace_back(e.window, e.threshold, e.used, static_cast<int>(e.kind));
  }
};

/// The same random calls on a packed tracker and an unpacked one on one
/// clock: every answer, usage and event must be the same. The clock only
/// moves forward: a word per window lets a
/// refused consumption move the earlier windows' periods on (with nothing
/// counted, after its rollback), which a clock stepped back then sees;
/// the packed word writes nothing on a refusal. Steps back are tested on
/// their own below.
void differential(const std::vector<quota_window>& windows, std::uint64_t seed, bool expect_packed,
                  std::optional<double> forecast = std::nullopt) {
  CAPTURE(seed);
  armor::manual_clock clock{sys_days{2026y / 12 / 31}.time_since_epoch() + 23h + 58min};
  armor::quota_tracker_options o{.windows = windows, .utc_offset = -5h};
  o.forecast_alert = forecast;
  listener_log packed_log, plain_log;
  armor::quota_tracker<armor::manual_clock, armor::memory_quota_storage, listener_log> packed{o, clock, {},
                                                                                             packed_log};
  armor::quota_tracker<armor::manual_clock, unpacked_memory, listener_log> plain{o, clock, {}, plain_log};
  REQUIRE(packed.storage().packed() == expect_packed);
  const auto still_packed = [&] { return packed.storage().packed(); };
  std::mt19937_64 rng(seed);
  const auto pick = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  std::int64_t smallest = std::numeric_limits<std::int64_t>::max();
  for (const quota_window& w : windows) smallest = std::min(smallest, w.limit);
  std::vector<std::pair<decltype(packed.reserve(1).permit()), decltype(plain.reserve(1).permit())>> permits;
  for (int step = 0; step < 4000; ++step) {
    CAPTURE(step);
    if (step == 3000) REQUIRE(still_packed() == expect_packed);
    const std::int64_t r = pick(0, 99);
    if (r < 45) {
      const std::int64_t cost = pick(0, 9) == 0 ? pick(-1, smallest + 1) : pick(1, std::max<std::int64_t>(smallest / 8, 1));
      const auto a = packed.try_consume(cost);
      const auto b = plain.try_consume(cost);
      REQUIRE(a.status() == b.status());
      REQUIRE(a.window() == b.window());
      REQUIRE(a.used() == b.used());
      REQUIRE(a.limit() == b.limit());
      REQUIRE(a.retry_after() == b.retry_after());
    } else if (r < 60) {
      const std::int64_t cost = pick(1, std::max<std::int64_t>(smallest / 4, 1));
      auto a = packed.reserve(cost);
      auto b = plain.reserve(cost);
      REQUIRE(a.status() == b.status());
      REQUIRE(a.used() == b.used());
      if (a) permits.emplace_back(std::move(a).permit(), std::move(b).permit());
    } else if (r < 72 && !permits.empty()) {
      const std::size_t k = static_cast<std::size_t>(pick(0, static_cast<std::int64_t>(permits.size()) - 1));
      const std::int64_t how = pick(0, 2);
      if (how == 0) {
        permits[k].first.cancel();
        permits[k].second.cancel();
      } else {
        const std::int64_t actual = how == 1 ? pick(0, permits[k].first.amount()) : pick(0, smallest * 2);
        REQUIRE(permits[k].first.commit(actual) == permits[k].second.commit(actual));
      }
      permits.erase(permits.begin() + static_cast<std::ptrdiff_t>(k));
    } else if (r < 76) {
      const std::int64_t units = pick(0, 5) == 0 ? pick(0, smallest * 3) : pick(1, 3);
      REQUIRE(packed.charge(units) == plain.charge(units));
    } else if (r < 93) {
      // Seconds, minutes, across an hour or a day, now and then a month or more.
      const std::int64_t kind = pick(0, 20);
      const nanoseconds d = kind < 10   ? nanoseconds{pick(1, 20'000'000'000)}
                            : kind < 17 ? nanoseconds{pick(1, 3'600'000'000'000)}
                            : kind < 20 ? nanoseconds{pick(1, 2 * 86'400'000'000'000)}
                                        : nanoseconds{pick(1, 40 * 86'400'000'000'000)};
      clock.advance(d);
    } else if (r < 97) {
      // New limits: sometimes beyond what the packed word holds (the counts move out).
      armor::quota_tracker_options n = o;
      for (quota_window& w : n.windows) {
        w.limit = pick(0, 3) == 0 ? std::max<std::int64_t>(w.limit / 2, 1)
                  : step > 3000 && pick(0, 9) == 0 ? armor::quota_max_limit  // the first 3000 steps stay packed
                                    : w.limit + pick(0, 50);
      }
      packed.reconfigure(n);
      plain.reconfigure(n);
      smallest = std::numeric_limits<std::int64_t>::max();
      for (const quota_window& w : n.windows) smallest = std::min(smallest, w.limit);
    }
    if (step % 7 == 0 || r >= 93) {
      for (std::size_t w = 0; w < windows.size(); ++w) {
        CAPTURE(w);
        const armor::quota_usage a = packed.usage(w);
        const armor::quota_usage b = plain.usage(w);
        REQUIRE(a.used == b.used);
        REQUIRE(a.limit == b.limit);
        REQUIRE(a.resets_in == b.resets_in);
        REQUIRE(a.projected == b.projected);
      }
      REQUIRE(packed.idle(armor::timestamp{}) == plain.idle(armor::timestamp{}));
    }
  }
  permits.clear();
  REQUIRE(*packed_log.events == *plain_log.events);
  const armor::quota_tracker_stats a = packed.stats(), b = plain.stats();
  REQUIRE(a.exhausted == b.exhausted);
  REQUIRE(a.too_large == b.too_large);
  REQUIRE(a.invalid == b.invalid);
  REQUIRE(a.unavailable == b.unavailable);
  REQUIRE(a.alerts == b.alerts);
  REQUIRE(a.forecast_alerts == b.forecast_alerts);
}

}  // namespace

TEST_CASE("packed counters decide, count, report and alert exactly as a word per window") {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    differential({quota_window::per_minute(40), quota_window::per_hour(300), quota_window::per_day(2000)}, seed,
                 true);
    differential({quota_window::per_minute(7), quota_window::per_month(500)}, seed, true);
    // A lifetime window, or an epoch window shorter than about 38 s, keeps a
    // word per window (see the regressions at the end of this file).
    differential({quota_window::per_hour(60), quota_window::per_week(900), quota_window::lifetime(5000)}, seed,
                 false);
    differential({quota_window::fixed(25, 7s), quota_window::fixed(90, 50s), quota_window::per_minute(120),
                  quota_window::per_hour(1000)},
                 seed, false);
    // Packed again: the same shapes without the lifetime window, or with
    // fixed windows of 40 s and 100 s.
    differential({quota_window::per_hour(60), quota_window::per_week(900), quota_window::per_month(5000)}, seed,
                 true);
    differential({quota_window::fixed(25, 40s), quota_window::fixed(90, 100s), quota_window::per_hour(300),
                  quota_window::per_day(1000)},
                 seed, true);
    differential({quota_window::per_minute(30), quota_window::per_day(400)}, seed, true, 0.5);
  }
}

TEST_CASE("a clock stepped back by days: each window keeps a later period within 4096 of its own, as a word per window does") {
  armor::manual_clock clock{sys_days{2026y / 3 / 10}.time_since_epoch() + 12h};
  const armor::quota_tracker_options o{
      .windows = {quota_window::per_minute(40), quota_window::per_day(900), quota_window::per_month(5000)},
      .alerts = {}};
  tracker packed{o, clock};
  plain_tracker plain{o, clock};
  REQUIRE(packed.storage().packed());
  const auto same = [&] {
    for (std::size_t w = 0; w < 3; ++w) {
      CAPTURE(w);
      CHECK(packed.usage(w).used == plain.usage(w).used);
      CHECK(packed.usage(w).resets_in == plain.usage(w).resets_in);
    }
  };
  REQUIRE(packed.try_consume(30));
  REQUIRE(plain.try_consume(30));
  same();
  clock.set(clock.now() - 4 * 24h);  // 5760 minutes back: the minute restarts, the day and month keep theirs
  same();
  CHECK(packed.usage(0).used == 0);
  CHECK(packed.usage(1).used == 30);
  const auto a = packed.try_consume(20);
  const auto b = plain.try_consume(20);
  CHECK(a.status() == b.status());
  CHECK_FALSE(packed.storage().packed());  // moved to a word per window, which says this per window
  same();
  CHECK(packed.usage(1).used == 50);
  clock.set(clock.now() + 4 * 24h + 1min);
  same();
  CHECK(packed.try_consume(1).status() == plain.try_consume(1).status());
  same();
}

TEST_CASE("a window set the packed word cannot name exactly keeps a word per window, and decides the same") {
  // A 30-day period is shorter than the longest month: one month could hold two of its boundaries.
  differential({quota_window::fixed(50, 30 * 24h), quota_window::per_month(80)}, 11, false);
  // Rolling windows need their ring.
  differential({quota_window::per_minute(20), quota_window::rolling(60, 1h, 6)}, 12, false);
  // One window already has a word of its own.
  differential({quota_window::per_day(100)}, 13, false);
  // Limits too large for three fields (2^30 - 1 at most).
  differential({quota_window::per_minute(1 << 30), quota_window::per_hour(100), quota_window::per_day(100)}, 14,
               false);
}

TEST_CASE("packed counters move to a word per window, keeping every count, when a limit or an overrun does not fit") {
  armor::manual_clock clock{1'700'000'000s};
  tracker t{{.windows = {quota_window::per_minute(1000), quota_window::per_hour(5000), quota_window::per_day(9000)},
             .alerts = {}},
            clock};
  REQUIRE(t.storage().packed());
  REQUIRE(t.try_consume(600));
  clock.advance(1min);
  REQUIRE(t.try_consume(300));
  CHECK(t.usage(0).used == 300);
  CHECK(t.usage(1).used == 900);
  SECTION("a limit above the packed limit") {
    const std::int64_t big = std::int64_t{1} << 31;
    t.reconfigure({.windows = {quota_window::per_minute(big), quota_window::per_hour(big), quota_window::per_day(big)},
                   .alerts = {}});
    REQUIRE(t.try_consume(100));
    CHECK_FALSE(t.storage().packed());
    CHECK(t.usage(0).used == 400);
    CHECK(t.usage(1).used == 1000);
    CHECK(t.usage(2).used == 1000);
    REQUIRE(t.try_consume(big - 1000));
    CHECK_FALSE(t.try_consume(1));
    CHECK(t.usage(2).used == big);
  }
  SECTION("an overrun beyond a field") {
    const std::int64_t huge = std::int64_t{1} << 33;
    REQUIRE(t.charge(huge) == armor::quota_tracker_status::granted);
    CHECK_FALSE(t.storage().packed());
    CHECK(t.usage(0).used == 300 + huge);
    CHECK(t.usage(2).used == 900 + huge);
    CHECK(t.try_consume(1).status() == armor::quota_tracker_status::exhausted);
    clock.advance(24h);
    CHECK(t.try_consume(1));
    CHECK(t.usage(2).used == 1);
  }
}

TEST_CASE("packed counters turn over with the calendar: minute, hour, day and month, and never move back") {
  // 2026-01-31 23:59:30 UTC: the minute, hour, day and month all end in 30 s.
  armor::manual_clock clock{sys_days{2026y / 1 / 31}.time_since_epoch() + 23h + 59min + 30s};
  tracker t{{.windows = {quota_window::per_minute(10), quota_window::per_hour(20), quota_window::per_day(30),
                         quota_window::per_month(40)}},
            clock};
  REQUIRE(t.storage().packed());
  REQUIRE(t.try_consume(10));
  CHECK(t.try_consume(1).window() == 0);
  clock.advance(29s);
  CHECK_FALSE(t.try_consume(1));
  clock.advance(1s);  // 00:00:00 on February 1st
  REQUIRE(t.try_consume(10));
  for (std::size_t w = 0; w < 4; ++w) CHECK(t.usage(w).used == 10);
  // A reading a second earlier (another thread's) counts in the later periods.
  clock.set(clock.now() - 1s);
  CHECK_FALSE(t.try_consume(1));  // the minute of 00:00 is full
  CHECK(t.usage(0).used == 10);
  clock.advance(61s);
  REQUIRE(t.try_consume(5));
  CHECK(t.usage(0).used == 5);
  CHECK(t.usage(1).used == 15);
  CHECK(t.usage(3).used == 15);
  // A month later only the month turns over with the others.
  clock.advance(28 * 24h);  // 2026-03-01 00:01:01
  REQUIRE(t.try_consume(2));
  for (std::size_t w = 0; w < 4; ++w) CHECK(t.usage(w).used == 2);
}

TEST_CASE("a packed reservation given back long after still reaches the periods it was counted in") {
  armor::manual_clock clock{1'700'000'000s};
  tracker t{{.windows = {quota_window::per_minute(100), quota_window::per_month(1000)}}, clock};
  REQUIRE(t.storage().packed());
  auto d = t.reserve(80);
  REQUIRE(d);
  clock.advance(5 * 24h);  // more than 4096 minutes: the permit's epoch is far behind the word's
  REQUIRE(t.try_consume(1));
  const std::int64_t month_before = t.usage(1).used;
  d.permit().cancel();
  // Given back to the month (still the same month, unless these 5 days crossed it).
  const bool same_month = month_before == 81;
  CHECK(t.usage(1).used == (same_month ? 1 : month_before));
  CHECK(t.usage(0).used == 1);
}

// Regressions (review of the packed counters): the 24-bit epoch tag of the
// shortest window cannot tell a clock stepped back by d epochs from one idle
// for 2^24 - d, so short epochs and lifetime windows are no longer packed.

TEST_CASE("a tracker idle for 2^23 epochs of its shortest window and more still grants, as a word per window does") {
  struct set {
    std::vector<quota_window> windows;
    nanoseconds epoch;
    std::int64_t idle;  // epochs
  };
  const std::vector<set> sets{
      {{quota_window::fixed(5, 1s), quota_window::per_day(10)}, 1s, (std::int64_t{1} << 23) + 100'000},
      {{quota_window::fixed(5, 100ms), quota_window::per_hour(10)}, 100ms, (std::int64_t{1} << 23) + 200'000},
      {{quota_window::fixed(5, 10ms), quota_window::per_minute(10)}, 10ms, (std::int64_t{1} << 23) + 200'000},
  };
  for (std::size_t k = 0; k < sets.size(); ++k) {
    CAPTURE(k);
    const set& s = sets[k];
    armor::manual_clock clock{sys_days{2026y / 3 / 10}.time_since_epoch() + 12h};
    const armor::quota_tracker_options o{.windows = s.windows, .alerts = {}};
    tracker t{o, clock};
    plain_tracker plain{o, clock};
    for (std::int64_t n = 0; n < s.windows[1].limit; ++n) {
      REQUIRE(t.try_consume(1));
      REQUIRE(plain.try_consume(1));
      clock.advance(s.epoch);
    }
    clock.advance(s.epoch * s.idle);  // days to months later: every window is in a new period
    const auto a = t.try_consume(1);
    const auto b = plain.try_consume(1);
    CHECK(b);
    CHECK(a.status() == b.status());
    CHECK(a.retry_after() == b.retry_after());
    CHECK(t.usage(1).used == plain.usage(1).used);
  }
}

TEST_CASE("a tracker with a lifetime window keeps a word per window: a read never names the epoch from the start of time") {
  // Packed, usage() of the lifetime window (or a refusal's retry_after)
  // could finish another thread's move to a word per window from an epoch
  // read near the start of time, and decode the day at a bogus period.
  armor::manual_clock clock{sys_days{2026y / 3 / 10}.time_since_epoch() + 12h};
  tracker t{{.windows = {quota_window::per_minute(100), quota_window::per_day(10), quota_window::lifetime(1000)},
             .alerts = {}},
            clock};
  CHECK_FALSE(t.storage().packed());
  for (int n = 0; n < 10; ++n) REQUIRE(t.try_consume(1));
  CHECK(t.usage(2).used == 10);
  const auto refused = t.try_consume(1);
  CHECK_FALSE(refused);
  CHECK(refused.window() == 1);
  CHECK(t.usage(1).used == 10);
  clock.advance(1h);
  CHECK_FALSE(t.try_consume(1));  // the same day
  CHECK(t.usage(2).used == 10);
}

TEST_CASE("cancelling a permit 2^24 epochs of the shortest window old gives nothing to the current period") {
  // 10 ms epochs: 2^24 of them are 46.6 h. The tracker is used every 11.6 h
  // meanwhile, so no gap between two calls reaches 2^23 epochs.
  const armor::quota_tracker_options o{.windows = {quota_window::fixed(1000, 10ms), quota_window::per_minute(10)},
                                       .alerts = {}};
  const auto start = sys_days{2026y / 3 / 10}.time_since_epoch() + 12h + 5s;
  const auto run = [](armor::manual_clock& clock, auto& t) {
    auto d = t.reserve(5);
    REQUIRE(d);
    for (int k = 0; k < 3; ++k) {
      clock.advance(10ms * (std::int64_t{1} << 22));
      REQUIRE(t.try_consume(1));
    }
    clock.advance(10ms * (std::int64_t{1} << 22) - 30s);
    REQUIRE(t.try_consume(1));
    clock.advance(30s);  // the next minute, exactly 2^24 epochs after the reservation
    int granted = 0;
    for (int k = 0; k < 10; ++k) granted += t.try_consume(1) ? 1 : 0;
    CHECK(granted == 10);
    d.permit().cancel();  // counted 46.6 h ago: nothing to give back in this minute
    for (int k = 0; k < 10; ++k) granted += t.try_consume(1) ? 1 : 0;
    return granted;
  };
  armor::manual_clock c1{start}, c2{start};
  tracker t{o, c1};
  plain_tracker plain{o, c2};
  CHECK(run(c1, t) == 10);
  CHECK(run(c2, plain) == 10);
}

TEST_CASE("the counters pack from an epoch window of 38 s: 2^23 of its slices span ten years") {
  armor::manual_clock clock{1'700'000'000s};
  const auto packs = [&](std::vector<quota_window> windows) {
    tracker t{{.windows = std::move(windows), .alerts = {}}, clock};
    return t.storage().packed();
  };
  CHECK_FALSE(packs({quota_window::fixed(10, 37s), quota_window::per_hour(100)}));
  CHECK(packs({quota_window::fixed(10, 38s), quota_window::per_hour(100)}));
  CHECK(packs({quota_window::per_minute(10), quota_window::per_day(100)}));
  CHECK_FALSE(packs({quota_window::per_minute(10), quota_window::lifetime(100)}));
  CHECK_FALSE(packs({quota_window::fixed(10, 1s), quota_window::per_minute(100)}));
}
