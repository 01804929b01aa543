// armor::adaptive_limit: exact admission, priorities, the three algorithms'
// trajectories on exact timestamps, the peers' failure modes as regression
// cases, the pipeline protocol, listener, stats and keyed<>.
// Single-threaded, on manual_clock; threads are in tests/stress/.
#include <armor/adaptive_limit.hpp>
#include <armor/deadline.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using ns = std::chrono::nanoseconds;

namespace {

armor::verdict verdict_of(armor::outcome k) {
  armor::verdict v;
  v.kind = k;
  return v;
}

/// Drives an adaptive limit one window at a time on exact timestamps: in
/// each window `demand` normal calls start together (as many as are
/// admitted), all last latency(admitted) and end with `kind`; then the
/// window is closed at its exact end with update().
template <class A>
struct simulation {
  armor::manual_clock clock{};
  armor::adaptive_limit<A, armor::manual_clock> limit;
  std::int64_t window_ns;

  explicit simulation(const armor::adaptive_limit_options<A>& o) : limit(o, clock), window_ns(o.window.count()) {}

  std::uint32_t round(std::uint32_t demand, const std::function<ns(std::uint32_t)>& latency,
                      armor::outcome kind = armor::outcome::success) {
    const armor::timestamp t0 = armor::to_timestamp(clock.now());
    std::vector<armor::adaptive_limit_permit> held;
    for (std::uint32_t i = 0; i < demand; ++i) {
      auto d = limit.try_acquire(t0);
      if (!d) break;
      held.push_back(std::move(d).permit());
    }
    const auto n = static_cast<std::uint32_t>(held.size());
    const ns lat = latency(n);
    for (auto& p : held) limit.record(std::move(p), verdict_of(kind), t0 + lat);
    clock.advance(ns{window_ns});
    limit.update(armor::to_timestamp(clock.now()));
    return n;
  }

  /// `windows` rounds; the limit after each.
  std::vector<std::uint32_t> run(int windows, std::uint32_t demand, const std::function<ns(std::uint32_t)>& latency,
                                 armor::outcome kind = armor::outcome::success) {
    std::vector<std::uint32_t> out;
    for (int i = 0; i < windows; ++i) {
      round(demand, latency, kind);
      out.push_back(limit.limit());
    }
    return out;
  }
};

constexpr std::uint32_t unbounded = 100'000;

ns flat_10ms(std::uint32_t) { return 10ms; }

/// An upstream with capacity for 50 calls: 10 ms each up to 50 in flight,
/// then proportionally slower (its queue grows).
ns capacity_50(std::uint32_t n) { return ns{static_cast<std::int64_t>(10e6 * std::max(1.0, n / 50.0))}; }

template <class A = armor::gradient_limit>
std::string config_error(const armor::adaptive_limit_options<A>& o) {
  try {
    armor::adaptive_limit<A> l{o};
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "";
}

bool names(const std::string& message, const std::string& option) {
  INFO(message);
  return message.find(option) != std::string::npos;
}

}  // namespace

TEST_CASE("adaptive_limit: bad options are refused at construction, naming the option", "[adaptive_limit]") {
  using o = armor::adaptive_limit_options<>;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(names(config_error(o{.min_limit = 0}), "min_limit"));
  CHECK(names(config_error(o{.initial_limit = 5, .min_limit = 10, .max_limit = 8}), "min_limit must not exceed max_limit"));
  CHECK(names(config_error(o{.initial_limit = 0}), "initial_limit"));
  CHECK(names(config_error(o{.initial_limit = 2000}), "initial_limit"));
  CHECK(names(config_error(o{.max_limit = 1U << 21}), "max_limit"));
  CHECK(names(config_error(o{.window = 0s}), "window"));
  CHECK(names(config_error(o{.window = -1s}), "window"));
  CHECK(names(config_error(o{.min_samples = 0}), "min_samples"));
  CHECK(names(config_error(o{.normal_share = 0}), "normal_share"));
  CHECK(names(config_error(o{.normal_share = 1.5}), "normal_share"));
  CHECK(names(config_error(o{.normal_share = nan}), "normal_share"));
  CHECK(names(config_error(o{.normal_share = 0.5, .sheddable_share = 0.6}), "sheddable_share"));
  CHECK(names(config_error(o{.sheddable_share = nan}), "sheddable_share"));

  CHECK(names(config_error(o{.algorithm = {.tolerance = 0.5}}), "tolerance"));
  CHECK(names(config_error(o{.algorithm = {.long_window = 0}}), "long_window"));
  CHECK(names(config_error(o{.algorithm = {.smoothing = 0}}), "smoothing"));
  CHECK(names(config_error(o{.algorithm = {.smoothing = 1.01}}), "smoothing"));
  CHECK(names(config_error(o{.algorithm = {.smoothing = nan}}), "smoothing"));
  CHECK(names(config_error(o{.algorithm = {.backoff_ratio = 1}}), "backoff_ratio"));
  CHECK(names(config_error(o{.algorithm = {.max_healthy_latency = -1ms}}), "max_healthy_latency"));
  CHECK(names(config_error(o{.algorithm = {.warmup_windows = 0}}), "warmup_windows"));

  using vo = armor::adaptive_limit_options<armor::vegas_limit>;
  CHECK(names(config_error(vo{.algorithm = {.alpha = 0}}), "alpha"));
  CHECK(names(config_error(vo{.algorithm = {.alpha = 4, .beta = 3}}), "beta"));
  CHECK(names(config_error(vo{.algorithm = {.probe_jitter = 1}}), "probe_jitter"));
  CHECK(names(config_error(vo{.algorithm = {.smoothing = 0}}), "smoothing"));

  using ao = armor::adaptive_limit_options<armor::aimd_limit>;
  CHECK(names(config_error(ao{.algorithm = {.increase = 0}}), "increase"));
  CHECK(names(config_error(ao{.algorithm = {.increase = nan}}), "increase"));
  CHECK(names(config_error(ao{.algorithm = {.backoff_ratio = 0}}), "backoff_ratio"));

  CHECK(config_error(o{}).empty());
  CHECK(config_error(o{.initial_limit = 1, .min_limit = 1, .max_limit = 1}).empty());
}

TEST_CASE("adaptive_limit: admits exactly up to the limit, and a dropped permit gives its slot back",
          "[adaptive_limit]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{
      {.initial_limit = 3, .normal_share = 1, .sheddable_share = 1}, clock};
  const armor::timestamp t{};
  auto a = lim.try_acquire(t);
  auto b = lim.try_acquire(t);
  auto c = lim.try_acquire(t);
  REQUIRE((a && b && c));
  CHECK(lim.in_flight() == 3);
  auto d = lim.try_acquire(t);
  CHECK_FALSE(d);
  CHECK(d.code() == armor::errc::concurrency_limited);
  CHECK(d.retry_after() == ns::max());  // no window closed yet: no estimate
  { auto dropped = std::move(a).permit(); }
  CHECK(lim.in_flight() == 2);
  CHECK(lim.try_acquire(t));  // taken and dropped at once
  CHECK(lim.in_flight() == 2);
  auto p = std::move(b).permit();
  p.release();
  p.release();  // once only
  CHECK(lim.in_flight() == 1);
  lim.record(std::move(c).permit(), armor::verdict::success(), t + 1ms);
  CHECK(lim.in_flight() == 0);
}

TEST_CASE("adaptive_limit: lower priorities are refused first", "[adaptive_limit]") {
  armor::manual_clock clock;
  // Limit 20: sheddable calls below 15 in flight, normal below 18, critical up to 20.
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{{.initial_limit = 20}, clock};
  CHECK(lim.limit(armor::priority::critical) == 20);
  CHECK(lim.limit(armor::priority::normal) == 18);
  CHECK(lim.limit(armor::priority::sheddable) == 15);
  const armor::timestamp t{};
  std::vector<armor::adaptive_limit_permit> held;
  const auto fill = [&](armor::priority p) {
    int n = 0;
    while (auto d = lim.try_acquire(t, p)) {
      held.push_back(std::move(d).permit());
      ++n;
    }
    return n;
  };
  CHECK(fill(armor::priority::sheddable) == 15);
  CHECK(fill(armor::priority::normal) == 3);
  CHECK(fill(armor::priority::critical) == 2);
  CHECK(lim.in_flight() == 20);
  held.pop_back();
  CHECK_FALSE(lim.try_acquire(t, armor::priority::sheddable));
  CHECK_FALSE(lim.try_acquire(t, armor::priority::normal));
  CHECK(lim.try_acquire(t, armor::priority::critical));

  // A small limit keeps at least one slot for every priority.
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> one{{.initial_limit = 1}, clock};
  CHECK(one.limit(armor::priority::sheddable) == 1);
}

TEST_CASE("gradient: a healthy upstream lets the limit grow by sqrt(limit), smoothed", "[adaptive_limit]") {
  simulation<armor::gradient_limit> s({.initial_limit = 20, .min_samples = 1});
  CHECK(s.run(12, unbounded, flat_10ms) == std::vector<std::uint32_t>{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32});
}

TEST_CASE("gradient regression: steady overload behind a queue does not grow the limit without end (concurrency-limits #134)",
          "[adaptive_limit]") {
  // Past 50 in flight the upstream queues: latency grows with the limit and
  // the long-term average catches up from below. Growth stops there.
  simulation<armor::gradient_limit> s({.initial_limit = 20, .min_samples = 1});
  const auto v = s.run(3000, unbounded, capacity_50);
  const std::vector<std::uint32_t> start(v.begin(), v.begin() + 34);
  CHECK(start == std::vector<std::uint32_t>{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36, 37,
                                            39, 40, 41, 42, 44, 45, 46, 48, 49, 51, 52, 53, 55, 56, 58, 58, 58});
  for (std::size_t i = 31; i < v.size(); ++i) REQUIRE(v[i] == 58);  // 52 in flight: 1.04x the unloaded latency
}

TEST_CASE("gradient regression: calls that all hit the same timeout shrink the limit (concurrency-limits #137)",
          "[adaptive_limit]") {
  // Zero variance at the timeout looks like a healthy, steady latency; a
  // timeout is a drop, not a latency sample, so the limit falls.
  simulation<armor::gradient_limit> s({.initial_limit = 20, .min_samples = 1});
  CHECK(s.run(24, unbounded, [](std::uint32_t) { return ns{1s}; }, armor::outcome::timeout) ==
        std::vector<std::uint32_t>{18, 16, 14, 13, 11, 10, 9, 8, 7, 6, 6, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1});
  CHECK(s.limit.stats().samples == 0);
  CHECK(s.limit.stats().timeouts > 0);
}

TEST_CASE("gradient regression: max_healthy_latency keeps a slowly drifting incident from blinding the limiter (failsafe-go #127)",
          "[adaptive_limit]") {
  // Latency drifts up 0.05 % a window, from 10 ms to 45 ms over 3000
  // windows: slowly enough that the long-term average follows it, so the
  // gradient never falls below 1 and the limiter never reacts. With a
  // ceiling on what counts as healthy it does, once latency passes 1.5x it.
  const auto drift = [](int guard_ms) {
    armor::gradient_limit g{};
    g.max_healthy_latency = std::chrono::milliseconds{guard_ms};
    simulation<armor::gradient_limit> s({.initial_limit = 100, .min_samples = 1, .algorithm = g});
    s.run(20, unbounded, flat_10ms);
    std::vector<std::uint32_t> every_500;
    for (int w = 0; w < 3000; ++w) {
      s.round(unbounded, [&](std::uint32_t) { return ns{static_cast<std::int64_t>(10e6 * std::exp(0.0005 * w))}; });
      if (w % 500 == 0) every_500.push_back(s.limit.limit());
    }
    every_500.push_back(s.limit.limit());
    return every_500;
  };
  CHECK(drift(0) == std::vector<std::uint32_t>{146, 146, 146, 146, 146, 146, 146});
  // Down to min_limit: at limit 2 the normal calls fill their one slot, so
  // the window is not app-limited (it was taken as app-limited, and the limit
  // frozen at 2, before windows compared with the sheddable threshold).
  CHECK(drift(20) == std::vector<std::uint32_t>{146, 146, 146, 146, 146, 1, 1});
}

TEST_CASE("gradient regression: slow first windows are not learned as the healthy latency (issue 18)",
          "[adaptive_limit]") {
  // The capacity-50 upstream, its first 3 windows 6 ms slower (1.6x: a
  // machine stall while the limit warms up). The long-term average used to
  // start from the first window alone: 16 ms became "healthy", the limit
  // grew until the upstream's queue made it that slow (80 in flight) and
  // stayed there, as the 1/600 average hardly moves. Warming up on the
  // lowest mean two windows in a row reached, it is 10 ms again two windows
  // after the stall, before the limit nears capacity: the trajectory is the
  // one without the stall, window for window (N = 0 windows apart).
  const auto run = [](std::uint32_t warmup, int slow_windows, int windows) {
    simulation<armor::gradient_limit> s({.initial_limit = 20, .min_samples = 1, .algorithm = {.warmup_windows = warmup}});
    std::vector<std::uint32_t> out;
    for (int w = 0; w < windows; ++w) {
      const ns extra = w < slow_windows ? ns{6ms} : ns{0};
      s.round(unbounded, [&](std::uint32_t n) { return capacity_50(n) + extra; });
      out.push_back(s.limit.limit());
    }
    return out;
  };
  const auto clean = run(10, 0, 3000);
  CHECK(clean.back() == 58);  // as in "steady overload behind a queue"
  // A stall of up to warmup_windows - 2 windows leaves two clean windows in
  // the warm-up; a longer one is learned (max_healthy_latency is for that).
  for (const int slow : {1, 3, 8}) {
    INFO("slow windows: " << slow);
    CHECK(run(10, slow, 3000) == clean);
  }
  CHECK(run(10, 9, 3000).back() > 58);

  // Before (warmup_windows = 1): 16 ms was healthy for good.
  const auto before = run(1, 3, 3000);
  // The same climb as the clean run to 58, past it while the window is
  // below 16 ms, and held at 89 from window 50 to 3000: 80 in flight, 16 ms,
  // 1.6x the unloaded latency (the clean run: 52 in flight, 1.04x).
  const std::vector<std::uint32_t> start(before.begin(), before.begin() + 50);
  CHECK(start == std::vector<std::uint32_t>{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36, 37,
                                            39, 40, 41, 42, 44, 45, 46, 48, 49, 51, 52, 53, 55, 56, 58, 59, 61,
                                            63, 64, 66, 67, 69, 71, 72, 74, 76, 78, 79, 81, 83, 85, 87, 89});
  for (std::size_t i = 49; i < before.size(); ++i) REQUIRE(before[i] == 89);

  // The step itself, window by window: the long-term average is the stall's
  // 16 ms until two clean windows in a row, then 10 ms; one lucky window
  // (6 ms) during the warm-up does not lower it.
  const armor::gradient_limit g{};
  armor::gradient_limit::state st;
  armor::adaptive_limit_window w;
  w.limit = 20;
  w.samples = 20;
  w.max_in_flight = 20;
  std::vector<double> long_ms;
  for (const auto mean : {16ms, 16ms, 16ms, 10ms, 10ms, 6ms, 10ms, 10ms}) {
    w.mean_latency = mean;
    (void)g.next(w, st);
    long_ms.push_back(st.long_ns / 1e6);
  }
  CHECK(long_ms == std::vector<double>{16, 16, 16, 16, 10, 10, 10, 10});
}

TEST_CASE("vegas: the limit settles where the queue estimate sits between alpha and beta", "[adaptive_limit]") {
  simulation<armor::vegas_limit> s({.initial_limit = 20, .min_samples = 1});
  CHECK(s.run(30, unbounded, capacity_50) ==
        std::vector<std::uint32_t>{21, 22, 23, 25, 26, 28, 29, 31, 32, 34, 35, 37, 38, 40, 41,
                                   43, 45, 46, 48, 50, 51, 53, 55, 57, 58, 60, 62, 62, 62, 62});
}

TEST_CASE("vegas regression: one lucky fast sample does not collapse the baseline", "[adaptive_limit]") {
  const auto run = [](bool lucky) {
    simulation<armor::vegas_limit> s({.initial_limit = 20, .min_samples = 1});
    std::vector<std::uint32_t> out;
    for (int i = 0; i < 30; ++i) {
      if (lucky && i == 5) {
        const auto t0 = armor::to_timestamp(s.clock.now());
        auto d = s.limit.try_acquire(t0);
        s.limit.record(std::move(d).permit(), armor::verdict::success(), t0 + 100us);  // 100x faster than any other
      }
      s.round(unbounded, capacity_50);
      out.push_back(s.limit.limit());
    }
    return out;
  };
  CHECK(run(true) == run(false));
}

TEST_CASE("vegas regression: a baseline re-taken during an incident does not pin the limit (Envoy #38338)",
          "[adaptive_limit]") {
  armor::vegas_limit v{};
  v.probe_every = 20;
  v.probe_jitter = 0;
  simulation<armor::vegas_limit> s({.initial_limit = 20, .min_samples = 1, .algorithm = v});
  CHECK(s.run(15, unbounded, capacity_50) ==
        std::vector<std::uint32_t>{21, 22, 23, 25, 26, 28, 29, 31, 32, 34, 35, 37, 38, 40, 41});
  // Five times slower for ten windows, across the probe at window 20.
  CHECK(s.run(10, unbounded, [](std::uint32_t n) { return capacity_50(n) * 5; }) ==
        std::vector<std::uint32_t>{40, 38, 37, 35, 34, 35, 37, 38, 40, 41});
  // The incident over, the baseline comes back down and the limit with it.
  CHECK(s.run(30, unbounded, capacity_50) ==
        std::vector<std::uint32_t>{43, 45, 46, 48, 50, 51, 53, 55, 57, 58, 60, 62, 62, 62, 62,
                                   64, 65, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67});
}

TEST_CASE("vegas: the probe interval's jitter comes from the seed", "[adaptive_limit]") {
  const auto run = [](std::uint64_t seed) {
    armor::vegas_limit v{};
    v.probe_every = 10;
    v.seed = seed;
    simulation<armor::vegas_limit> s({.initial_limit = 20, .min_samples = 1, .algorithm = v});
    std::vector<std::uint32_t> out;
    for (int i = 0; i < 60; ++i) {
      s.round(unbounded, [&](std::uint32_t n) { return i % 7 == 3 ? capacity_50(n) * 3 : capacity_50(n); });
      out.push_back(s.limit.limit());
    }
    return out;
  };
  CHECK(run(1) == run(1));
}

TEST_CASE("aimd regression: with the default min_limit it goes below its starting value", "[adaptive_limit]") {
  // concurrency-limits' AIMD defaults put min_limit = initial_limit = 20,
  // so it could never back off below 20; here min_limit is 1.
  simulation<armor::aimd_limit> s({.initial_limit = 20, .min_samples = 1});
  CHECK(s.run(10, unbounded, flat_10ms) == std::vector<std::uint32_t>{21, 22, 23, 24, 25, 26, 27, 28, 29, 30});
  CHECK(s.run(10, unbounded, flat_10ms, armor::outcome::throttled) ==
        std::vector<std::uint32_t>{27, 24, 21, 19, 17, 15, 14, 12, 11, 10});
}

TEST_CASE("aimd: a mean latency above latency_threshold backs off", "[adaptive_limit]") {
  simulation<armor::aimd_limit> s({.initial_limit = 20, .min_samples = 1, .algorithm = {.latency_threshold = 5ms}});
  CHECK(s.run(3, unbounded, flat_10ms) == std::vector<std::uint32_t>{18, 16, 14});
}

TEST_CASE("adaptive_limit: a throttled answer is a signal to reduce, not a latency sample", "[adaptive_limit]") {
  simulation<armor::gradient_limit> s({.initial_limit = 20, .min_samples = 1});
  s.round(unbounded, flat_10ms, armor::outcome::throttled);
  CHECK(s.limit.limit() == 18);
  const auto st = s.limit.stats();
  CHECK(st.samples == 0);
  CHECK(st.throttled == 18);
  CHECK(st.windows == 1);
  // Rejected and cancelled attempts are neither.
  s.round(5, flat_10ms, armor::outcome::cancelled);
  s.round(5, flat_10ms, armor::outcome::rejected);
  CHECK(s.limit.limit() == 18);
  CHECK(s.limit.stats().windows == 1);
}

TEST_CASE("adaptive_limit: a window closes only with min_samples timed calls, or a drop", "[adaptive_limit]") {
  simulation<armor::aimd_limit> s({.initial_limit = 20, .min_samples = 30});
  s.round(unbounded, flat_10ms);  // 18 samples: the window stays open
  CHECK(s.limit.stats().windows == 0);
  s.round(unbounded, flat_10ms);  // the 30th sample, at 1.01 s, closes it
  CHECK(s.limit.stats().windows == 1);
  CHECK(s.limit.limit() == 21);
  CHECK(s.limit.stats().samples == 30);
  CHECK(s.limit.stats().mean_latency == 10ms);
  s.round(1, flat_10ms, armor::outcome::timeout);  // one timeout is enough
  CHECK(s.limit.stats().windows == 2);
  CHECK(s.limit.limit() == 18);
}

TEST_CASE("adaptive_limit: refusals carry retry_after, the last window's mean latency / limit", "[adaptive_limit]") {
  simulation<armor::gradient_limit> s({.initial_limit = 10, .min_samples = 1, .normal_share = 1});
  s.round(unbounded, [](std::uint32_t) { return ns{100ms}; });
  const std::uint32_t l = s.limit.limit();
  CHECK(l == 10);  // 10 + 0.2 * sqrt(10) = 10.6
  const armor::timestamp t = armor::to_timestamp(s.clock.now());
  std::vector<armor::adaptive_limit_permit> held;
  while (auto d = s.limit.try_acquire(t)) held.push_back(std::move(d).permit());
  const auto refused = s.limit.try_acquire(t);
  CHECK(refused.code() == armor::errc::concurrency_limited);
  CHECK(refused.retry_after() == 10ms);
}

TEST_CASE("adaptive_limit in a pipeline: times calls on the pipeline's clock, refuses with concurrency_limited, "
          "and releases on exceptions", "[adaptive_limit]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> lim{
      {.initial_limit = 2, .window = 100ms, .min_samples = 1, .normal_share = 1, .sheddable_share = 0.5}, clock};
  auto p = armor::pipeline{clock, std::ref(lim)};
  CHECK(p.execute([&] {
    clock.advance(20ms);
    return 1;
  }) == 1);
  CHECK(lim.in_flight() == 0);
  CHECK_THROWS_AS(p.execute([&]() -> int { throw std::runtime_error("boom"); }), std::runtime_error);
  CHECK(lim.in_flight() == 0);

  // Nested: the outer call holds one slot, the inner a second; a third is refused.
  const auto r = p.try_execute([&] {
    return p.try_execute([&] { return p.try_execute([] { return 3; }).code(); }).value();
  });
  REQUIRE(r);
  CHECK(*r == armor::errc::concurrency_limited);
  // A sheddable call gets half the limit: one slot.
  const auto s = p.try_execute([&] { return p.try_execute([] { return 4; }, {.priority = armor::priority::sheddable}).code(); },
                               {.priority = armor::priority::sheddable});
  REQUIRE(s);
  CHECK(*s == armor::errc::concurrency_limited);

  // After 100 ms the next settled call closes the window: 20 ms mean, 2 samples.
  clock.advance(100ms);
  CHECK(p.execute([] { return 5; }) == 5);
  CHECK(lim.stats().windows == 1);
  CHECK(lim.stats().mean_latency > 0ms);
}

TEST_CASE("adaptive_limit in a pipeline: a call that fails past its deadline is a timeout, a drop", "[adaptive_limit]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{
      {.initial_limit = 10, .window = 1s, .min_samples = 1}, clock};
  auto p = armor::pipeline{clock, std::ref(lim), armor::deadline{500ms}};
  for (int i = 0; i < 3; ++i) {
    (void)p.try_execute([&]() -> int {
      clock.advance(600ms);
      throw std::runtime_error("too late");
    });
  }
  CHECK(lim.stats().timeouts == 2);  // the second call, ending at 1.2 s, closed the first window
  CHECK(lim.limit() == 9);
}

namespace {
struct event_log {
  std::vector<armor::adaptive_limit_event>* events;
  void operator()(const armor::adaptive_limit_event& e) const noexcept {
    try {
      events->push_back(e);
    } catch (...) {
    }
  }
};
}  // namespace

TEST_CASE("adaptive_limit: the listener hears limit changes and refusals, with the key", "[adaptive_limit]") {
  std::vector<armor::adaptive_limit_event> events;
  armor::manual_clock clock;
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock, event_log> lim{
      {.initial_limit = 2, .min_samples = 1, .normal_share = 1}, clock, event_log{&events}, "db"};
  const armor::timestamp t{};
  auto a = lim.try_acquire(t);
  auto b = lim.try_acquire(t, armor::priority::critical);
  CHECK_FALSE(lim.try_acquire(t, armor::priority::sheddable));
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == armor::adaptive_limit_event_kind::refused);
  CHECK(events[0].priority == armor::priority::sheddable);
  CHECK(events[0].in_flight == 2);
  CHECK(events[0].key == "db");
  lim.record(std::move(a).permit(), armor::verdict::success(), t + 10ms);
  lim.record(std::move(b).permit(), armor::verdict::success(), t + 2s);  // closes the window: 2 -> 3
  REQUIRE(events.size() == 2);
  CHECK(events[1].kind == armor::adaptive_limit_event_kind::limit_changed);
  CHECK(events[1].previous_limit == 2);
  CHECK(events[1].limit == 3);
}

TEST_CASE("adaptive_limit: stats count admissions and refusals with count_calls", "[adaptive_limit]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{
      {.initial_limit = 1, .count_calls = true}, clock};
  auto a = lim.try_acquire(armor::timestamp{});
  CHECK_FALSE(lim.try_acquire(armor::timestamp{}));
  const auto s = lim.stats();
  CHECK(s.counting);
  CHECK(s.admitted == 1);
  CHECK(s.refused == 1);
  CHECK(s.limit == 1);
  CHECK(s.in_flight == 1);
}

TEST_CASE("keyed<adaptive_limit>: one limit per upstream", "[adaptive_limit]") {
  armor::manual_clock clock;
  using limit_type = armor::adaptive_limit<armor::gradient_limit, armor::manual_clock>;
  armor::keyed<limit_type> per_host{{.initial_limit = 1}, {}, clock};
  auto p = armor::pipeline{clock, std::ref(per_host)};
  const auto inner = [&](std::string_view other) {
    return p.try_execute([] { return 1; }, {.key = other}).code();
  };
  const auto same = p.try_execute([&] { return inner("a"); }, {.key = "a"});
  const auto different = p.try_execute([&] { return inner("b"); }, {.key = "a"});
  REQUIRE((same && different));
  CHECK(*same == armor::errc::concurrency_limited);
  CHECK(*different == std::error_code{});
}

TEST_CASE("keyed<adaptive_limit> with a listener: each key's copy says which key", "[adaptive_limit]") {
  std::vector<armor::adaptive_limit_event> events;
  armor::manual_clock clock;
  using limit_type = armor::adaptive_limit<armor::gradient_limit, armor::manual_clock, event_log>;
  armor::keyed<limit_type> per_host{{.initial_limit = 1}, {}, clock, event_log{&events}};
  auto held = per_host.get("api.example.com")->try_acquire();
  REQUIRE(held);
  CHECK_FALSE(per_host.get("api.example.com")->try_acquire());
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == armor::adaptive_limit_event_kind::refused);
  CHECK(events[0].key == "api.example.com");
}

namespace {

struct thresholds {
  std::uint32_t critical, normal, sheddable;
  bool operator==(const thresholds&) const = default;
};

template <class L>
thresholds thresholds_of(const L& lim) {
  return {lim.limit(armor::priority::critical), lim.limit(armor::priority::normal),
          lim.limit(armor::priority::sheddable)};
}

}  // namespace

TEST_CASE("adaptive_limit: small limits keep a slot from each lower priority when they can; 1 reserves nothing",
          "[adaptive_limit]") {
  armor::manual_clock clock;
  // Default shares 0.9 and 0.75. l = 1 has one slot for every priority.
  const thresholds want[] = {{1, 1, 1}, {2, 1, 1}, {3, 2, 1}, {4, 3, 2}, {5, 4, 3}, {6, 5, 4}};
  for (std::uint32_t l = 1; l <= 6; ++l) {
    INFO("limit " << l);
    armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> lim{{.initial_limit = l}, clock};
    CHECK(thresholds_of(lim) == want[l - 1]);
    // Admission follows the thresholds: fill sheddable, then normal, then critical.
    const armor::timestamp t{};
    std::vector<armor::adaptive_limit_permit> held;
    const auto fill = [&](armor::priority p) {
      std::uint32_t n = 0;
      while (auto d = lim.try_acquire(t, p)) {
        held.push_back(std::move(d).permit());
        ++n;
      }
      return n;
    };
    CHECK(fill(armor::priority::sheddable) == want[l - 1].sheddable);
    CHECK(fill(armor::priority::normal) == want[l - 1].normal - want[l - 1].sheddable);
    CHECK(fill(armor::priority::critical) == want[l - 1].critical - want[l - 1].normal);
  }
  // Equal shares reserve nothing: share 1 lets every priority use the whole limit.
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> all{
      {.initial_limit = 4, .normal_share = 1, .sheddable_share = 1}, clock};
  CHECK(thresholds_of(all) == thresholds{4, 4, 4});
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> same{
      {.initial_limit = 4, .normal_share = 0.5, .sheddable_share = 0.5}, clock};
  CHECK(thresholds_of(same) == thresholds{4, 2, 2});
}

TEST_CASE("adaptive_limit: a decimal share stored inexactly loses no call (floor(90 * 0.7) is 63)", "[adaptive_limit]") {
  armor::manual_clock clock;
  for (const double share : {0.9, 0.75, 0.3, 0.29, 0.7, 0.57, 0.1, 0.6}) {
    const auto per_cent = static_cast<std::uint32_t>(std::lround(share * 100));
    for (std::uint32_t l : {1U, 2U, 7U, 10U, 90U, 100U, 300U, 1000U, 4321U, 99'999U, 1'048'575U, 2'097'151U}) {
      INFO("share " << share << " limit " << l);
      armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> lim{
          {.initial_limit = l, .max_limit = 2'097'151, .normal_share = share, .sheddable_share = share}, clock};
      std::uint32_t want = static_cast<std::uint32_t>(std::uint64_t{l} * per_cent / 100);
      want = std::max<std::uint32_t>(1, l >= 2 && share < 1 ? std::min(want, l - 1) : want);
      CHECK(lim.limit(armor::priority::normal) == want);
      CHECK(lim.limit(armor::priority::sheddable) == want);
    }
  }
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> ninety{
      {.initial_limit = 90, .normal_share = 0.7, .sheddable_share = 0.7}, clock};
  CHECK(ninety.limit(armor::priority::normal) == 63);
}

TEST_CASE("adaptive_limit regression: sheddable calls alone, with sheddable_share < 0.5, still grow the limit",
          "[adaptive_limit]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> lim{
      {.initial_limit = 20, .max_limit = 100, .window = 1s, .min_samples = 1, .sheddable_share = 0.3}, clock};
  REQUIRE(lim.limit(armor::priority::sheddable) == 6);
  for (int round = 0; round < 5; ++round) {
    const armor::timestamp t0 = armor::to_timestamp(clock.now());
    std::vector<armor::adaptive_limit_permit> held;
    while (auto d = lim.try_acquire(t0, armor::priority::sheddable)) held.push_back(std::move(d).permit());
    for (auto& p : held) lim.record(std::move(p), armor::verdict::success(), t0 + 10ms);
    clock.advance(1s);
    lim.update(armor::to_timestamp(clock.now()));
  }
  CHECK(lim.limit() == 25);  // +1 a window: the sheddable share was used

  // What app_limited() compares.
  armor::adaptive_limit_window w;
  w.limit = 20;
  w.max_in_flight = 6;
  CHECK(w.app_limited());  // threshold unknown: half the limit
  w.sheddable_limit = 6;
  CHECK_FALSE(w.app_limited());  // the sheddable threshold was reached
  w.max_in_flight = 5;
  CHECK(w.app_limited());
  w.max_in_flight = 10;
  CHECK_FALSE(w.app_limited());
}

TEST_CASE("adaptive_limit: limit(p) takes a priority past sheddable as sheddable, as try_acquire does",
          "[adaptive_limit]") {
  armor::adaptive_limit<> lim{{.initial_limit = 20}};
  for (const int raw : {3, 4, 7, 255}) {
    CHECK(lim.limit(static_cast<armor::priority>(raw)) == lim.limit(armor::priority::sheddable));
  }
}

TEST_CASE("adaptive_limit: idle() needs nothing pending in the window and the algorithm's state at rest",
          "[adaptive_limit]") {
  armor::manual_clock clock;
  const auto now = [&] { return armor::to_timestamp(clock.now()); };
  SECTION("aimd keeps no state: idle again once the window is closed and the limit is back") {
    armor::adaptive_limit<armor::aimd_limit, armor::manual_clock> lim{
        {.initial_limit = 4, .min_limit = 4, .max_limit = 4, .min_samples = 1}, clock};
    CHECK(lim.idle(now()));
    auto d = lim.try_acquire(now());
    CHECK_FALSE(lim.idle(now()));  // in flight
    lim.record(std::move(d).permit(), armor::verdict::success(), now());
    CHECK_FALSE(lim.idle(now()));  // a sample pending in the open window
    clock.advance(1s);
    lim.update(now());
    CHECK(lim.stats().windows == 1);
    CHECK(lim.idle(now()));
    auto t = lim.try_acquire(now());
    lim.record(std::move(t).permit(), verdict_of(armor::outcome::timeout), now());
    CHECK_FALSE(lim.idle(now()));  // a drop pending
    clock.advance(1s);
    lim.update(now());
    CHECK(lim.idle(now()));  // the limit is pinned at 4: back where it started
  }
  SECTION("gradient learned a latency: not idle even with the limit where it started") {
    armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{
        {.initial_limit = 4, .min_limit = 4, .max_limit = 4, .min_samples = 1}, clock};
    CHECK(lim.idle(now()));
    auto d = lim.try_acquire(now());
    lim.record(std::move(d).permit(), armor::verdict::success(), now() + 5ms);
    clock.advance(1s);
    lim.update(now());
    CHECK(lim.stats().windows == 1);
    CHECK(lim.limit() == 4);
    CHECK_FALSE(lim.idle(now()));
  }
}

TEST_CASE("adaptive_limit core: a full window takes no more samples, and still gives the slot back",
          "[adaptive_limit]") {
  using core = armor::detail::adaptive_limit_core;
  core c;
  c.thresholds.store(armor::detail::pack_thresholds(5, 5, 5));
  c.pair.first.store(core::max_samples << 32);
  REQUIRE(c.try_enter(0) == 1);
  c.leave_with_sample(100);
  CHECK(c.in_flight() == 0);
  CHECK(c.samples() == core::max_samples);  // no wrap to 0
  CHECK(c.pair.second.load() == 0);

  core d;
  d.thresholds.store(armor::detail::pack_thresholds(5, 5, 5));
  d.pair.second.store(core::max_sum - 50);
  REQUIRE(d.try_enter(0) == 1);
  d.leave_with_sample(100);  // the sum would pass 2^63 - 1
  CHECK(d.in_flight() == 0);
  CHECK(d.samples() == 0);
  CHECK(d.pair.second.load() == core::max_sum - 50);
  REQUIRE(d.try_enter(0) == 1);
  d.leave_with_sample(50);
  CHECK(d.samples() == 1);
  CHECK(d.pair.second.load() == core::max_sum);
  const auto taken = d.take_samples();
  CHECK(taken.samples == 1);
  CHECK(taken.sum_ns == core::max_sum);
  CHECK(d.pair.first.load() == 0);
  CHECK(d.pair.second.load() == 0);
}

// ---------------------------------------------------------------------------
// The queue (max_queue > 0): FIFO, critical ahead of normal, no barging,
// handover on release, room from a higher limit, max_wait and deadline.

namespace {

// A waiter for the policy-level tests: counts its wake-ups.
struct test_waiter : armor::queue_waiter {
  test_waiter() : armor::queue_waiter(&on_wake) {}
  int wakes = 0;
  static void on_wake(armor::queue_waiter& w) noexcept { ++static_cast<test_waiter&>(w).wakes; }
};

using queue_limit = armor::adaptive_limit<armor::aimd_limit, armor::manual_clock>;
using queued_admission = armor::admission<armor::adaptive_limit_permit>;
using ak = armor::admission_kind;

armor::adaptive_limit_options<armor::aimd_limit> fixed_two(std::uint32_t max_queue) {
  return {.initial_limit = 2, .min_limit = 2, .max_limit = 2, .window = 1s, .min_samples = 1, .normal_share = 1,
          .sheddable_share = 1, .max_queue = max_queue, .max_wait = 1s};
}

}  // namespace

static_assert(armor::queueing_policy<queue_limit>);
static_assert(armor::queueing_policy<armor::adaptive_limit<>>);
static_assert(armor::queueing_policy<armor::keyed<armor::adaptive_limit<>>>);

TEST_CASE("adaptive_limit queue: bad max_queue and max_wait are refused, naming the option", "[adaptive_limit][queue]") {
  using o = armor::adaptive_limit_options<>;
  CHECK(names(config_error(o{.max_queue = 1U << 31}), "max_queue"));
  CHECK(names(config_error(o{.max_queue = 0, .max_wait = -1ms}), "max_wait"));
  CHECK(names(config_error(o{.max_queue = 4, .max_wait = 0ms}), "max_wait must be positive"));
  CHECK(config_error(o{.max_queue = 0, .max_wait = 0ms}).empty());  // no queue: unused
  CHECK(config_error(o{.max_queue = 4, .max_wait = 1ns}).empty());
  armor::adaptive_limit<> defaults;
  CHECK(defaults.options().max_queue == 0);
  CHECK(defaults.options().max_wait == 1s);
  CHECK_FALSE(defaults.stats().queueing);
}

TEST_CASE("adaptive_limit queue: without one, a full limit refuses at once, as before", "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  queue_limit lim{fixed_two(0), clock};
  armor::context ctx(armor::timestamp{});
  auto a = lim.admit(ctx);
  auto b = lim.admit(ctx);
  auto c = lim.admit(ctx);
  CHECK(c.kind == ak::rejected);
  CHECK(c.code == armor::errc::concurrency_limited);
  test_waiter w;
  CHECK(lim.enqueue(ctx, w).kind == ak::rejected);  // a driver that asks anyway is refused
  CHECK(lim.queued() == 0);
}

TEST_CASE("adaptive_limit queue: callers are served in arrival order, a released slot goes to the head, no barging",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  queue_limit lim{fixed_two(3), clock};
  armor::context ctx(armor::timestamp{});
  auto h1 = lim.admit(ctx);
  auto h2 = lim.admit(ctx);
  REQUIRE(h2.kind == ak::admitted);
  auto full = lim.admit(ctx);
  CHECK(full.kind == ak::queue);  // invited to queue
  CHECK(full.code == armor::errc::concurrency_limited);

  test_waiter w1, w2, w3, w4;
  auto q1 = lim.enqueue(ctx, w1);
  auto q2 = lim.enqueue(ctx, w2);
  auto q3 = lim.enqueue(ctx, w3);
  REQUIRE(q1.kind == ak::queued);
  REQUIRE(q2.kind == ak::queued);
  REQUIRE(q3.kind == ak::queued);
  CHECK(q1.delay == 1s);  // max_wait
  CHECK(q1.code == armor::errc::concurrency_limited);
  CHECK(q1.permit.queued());
  CHECK(lim.queued() == 3);
  // The queue is full: the fourth is refused at once.
  auto q4 = lim.enqueue(ctx, w4);
  CHECK(q4.kind == ak::rejected);
  CHECK(q4.code == armor::errc::concurrency_limited);

  // A holder leaves: its slot goes to the head, still counted.
  clock.advance(5ms);
  lim.settle(ctx, std::move(h1.permit), armor::verdict::success());
  CHECK(w1.wakes == 1);
  CHECK(w2.wakes + w3.wakes == 0);
  CHECK(lim.in_flight() == 2);
  CHECK(lim.queued() == 2);
  // Nobody barges in while others wait, of any priority that queues.
  CHECK(lim.admit(ctx).kind == ak::queue);
  CHECK_FALSE(lim.try_acquire(armor::timestamp{}, armor::priority::critical));

  // w2 gives up: it leaves unserved, and w3 is next.
  CHECK_FALSE(q2.permit.leave_queue());
  CHECK_FALSE(q2.permit);
  CHECK(lim.queued() == 1);
  // w1 takes its slot when it wakes: its call starts now, not when it queued.
  clock.advance(3ms);
  CHECK(q1.permit.leave_queue());
  CHECK_FALSE(q1.permit.queued());
  CHECK(q1.permit.started() == armor::timestamp{8ms});

  lim.settle(ctx, std::move(h2.permit), armor::verdict::success());
  CHECK(w3.wakes == 1);
  CHECK(lim.queued() == 0);
  CHECK(lim.in_flight() == 2);
  CHECK(q3.permit.leave_queue());
  lim.settle(ctx, std::move(q1.permit), armor::verdict::success());
  lim.settle(ctx, std::move(q3.permit), armor::verdict::success());
  CHECK(lim.in_flight() == 0);
  // The queue is empty again: the fast path admits.
  CHECK(lim.admit(ctx).kind == ak::admitted);
  const auto s = lim.stats();
  CHECK(s.queueing);
  CHECK(s.queued == 0);
  CHECK(s.max_queue == 3);
  CHECK(s.abandoned == 1);
}

TEST_CASE("adaptive_limit queue: a queued permit dropped unserved leaves; one granted meanwhile passes its slot on",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  queue_limit lim{fixed_two(4), clock};
  armor::context ctx(armor::timestamp{});
  auto h1 = lim.admit(ctx);
  auto h2 = lim.admit(ctx);
  test_waiter w1, w2, w3;
  std::optional<queued_admission> q1{lim.enqueue(ctx, w1)};
  std::optional<queued_admission> q2{lim.enqueue(ctx, w2)};
  auto q3 = lim.enqueue(ctx, w3);
  CHECK(lim.queued() == 3);
  q2.reset();  // dropped while waiting (a destroyed coroutine): out of the queue
  CHECK(lim.queued() == 2);
  h1.permit.release();  // to w1
  CHECK(w1.wakes == 1);
  q1.reset();  // granted, but dropped without leave_queue: the slot goes on to w3
  CHECK(w3.wakes == 1);
  CHECK(lim.queued() == 0);
  CHECK(lim.in_flight() == 2);
  q3.permit.release();  // granted, dropped: back to free
  CHECK(lim.in_flight() == 1);
  // A queued permit handed to record() is only released.
  test_waiter w4, w5;
  auto h3 = lim.admit(ctx);
  auto q4 = lim.enqueue(ctx, w4);
  REQUIRE(q4.kind == ak::queued);
  lim.record(std::move(q4.permit), armor::verdict::success(), armor::timestamp{1ms});
  CHECK(lim.queued() == 0);
  CHECK(lim.in_flight() == 2);
  CHECK(lim.stats().abandoned == 2);
  CHECK(lim.stats().samples == 0);
}

TEST_CASE("adaptive_limit queue: enqueue takes a slot at once when one came free after admit", "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  queue_limit lim{fixed_two(1), clock};
  armor::context ctx(armor::timestamp{});
  auto h1 = lim.admit(ctx);
  auto h2 = lim.admit(ctx);
  REQUIRE(lim.admit(ctx).kind == ak::queue);
  h1.permit.release();
  test_waiter w;
  auto q = lim.enqueue(ctx, w);
  CHECK(q.kind == ak::admitted);
  CHECK(lim.in_flight() == 2);
  CHECK(lim.queued() == 0);
  CHECK(w.wakes == 0);
}

TEST_CASE("adaptive_limit queue: critical callers wait ahead of normal ones; sheddable callers never wait",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  // Limit 4: critical up to 4, normal below 3, sheddable below 2.
  queue_limit lim{{.initial_limit = 4, .min_limit = 4, .max_limit = 4, .normal_share = 0.75, .sheddable_share = 0.5,
                   .max_queue = 8, .max_wait = 1s},
                  clock};
  armor::context normal(armor::timestamp{});
  armor::context critical(armor::timestamp{}, {.priority = armor::priority::critical});
  armor::context sheddable(armor::timestamp{}, {.priority = armor::priority::sheddable});
  auto h1 = lim.admit(normal);
  auto h2 = lim.admit(normal);
  auto h3 = lim.admit(normal);
  REQUIRE(h3.kind == ak::admitted);
  // Sheddable: refused at once, not invited.
  CHECK(lim.admit(sheddable).kind == ak::rejected);
  test_waiter ws;
  CHECK(lim.enqueue(sheddable, ws).kind == ak::rejected);

  test_waiter n1, n2;
  auto qn1 = lim.enqueue(normal, n1);
  auto qn2 = lim.enqueue(normal, n2);
  REQUIRE(qn2.kind == ak::queued);
  // A critical newcomer may still use the slot reserved for critical calls:
  // no critical caller waits, and normal waiters cannot have it.
  CHECK(lim.admit(critical).kind == ak::queue);  // the fast path does not barge...
  test_waiter c0;
  auto qc0 = lim.enqueue(critical, c0);  // ...the queue lets it in
  REQUIRE(qc0.kind == ak::admitted);
  CHECK(lim.in_flight() == 4);
  test_waiter c1;
  auto qc1 = lim.enqueue(critical, c1);
  REQUIRE(qc1.kind == ak::queued);
  CHECK(lim.queued() == 3);

  // One slot frees (4 -> 3 in flight): room for a critical call (below 4),
  // none for a normal one (below 3): the critical waiter, though it came last.
  h1.permit.release();
  CHECK(c1.wakes == 1);
  CHECK(n1.wakes == 0);
  // Two more free (down to 2): the normal waiters in arrival order, one slot each.
  h2.permit.release();
  CHECK(n1.wakes == 0);  // 3 in flight: not below the normal threshold
  h3.permit.release();
  CHECK(n1.wakes == 1);
  CHECK(n2.wakes == 0);
  CHECK(lim.in_flight() == 3);
  CHECK(qc1.permit.leave_queue());
  CHECK(qn1.permit.leave_queue());
  CHECK_FALSE(qn2.permit.leave_queue());
  CHECK(lim.queued() == 0);
}

TEST_CASE("adaptive_limit queue: try_acquire(critical) keeps the critical reserve while normal callers wait",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  // Limit 10: critical up to 10, normal below 5.
  queue_limit lim{{.initial_limit = 10, .min_limit = 10, .max_limit = 10, .normal_share = 0.5,
                   .sheddable_share = 0.5, .max_queue = 4, .max_wait = 1s},
                  clock};
  armor::context normal(armor::timestamp{});
  armor::context critical(armor::timestamp{}, {.priority = armor::priority::critical});
  std::vector<armor::adaptive_limit_permit> held;
  for (int i = 0; i < 5; ++i) held.push_back(std::move(lim.try_acquire()).permit());
  CHECK(lim.in_flight() == 5);
  test_waiter n1;
  auto qn1 = lim.enqueue(normal, n1);
  REQUIRE(qn1.kind == ak::queued);
  // A normal call does not barge past the waiter; a critical one has room.
  CHECK_FALSE(lim.try_acquire(armor::priority::normal));
  CHECK_FALSE(lim.try_acquire(armor::priority::sheddable));
  for (int i = 0; i < 5; ++i) {
    auto d = lim.try_acquire(armor::priority::critical);
    REQUIRE(d);
    held.push_back(std::move(d).permit());
  }
  CHECK(lim.in_flight() == 10);
  CHECK_FALSE(lim.try_acquire(armor::priority::critical));  // the reserve is used up
  // A critical caller waits: the next critical try_acquire does not pass it.
  test_waiter c1;
  auto qc1 = lim.enqueue(critical, c1);
  REQUIRE(qc1.kind == ak::queued);
  held.pop_back();  // 10 -> 9: to the critical waiter
  CHECK(c1.wakes == 1);
  CHECK(lim.in_flight() == 10);
  CHECK(qc1.permit.leave_queue());
  held.pop_back();  // 10 -> 9: nobody can use it (normal waits below 5)
  CHECK(n1.wakes == 0);
  CHECK(lim.in_flight() == 9);
  CHECK(lim.queued() == 1);
  CHECK(lim.try_acquire(armor::priority::critical));  // granted, and released at once
  CHECK(lim.in_flight() == 9);
  CHECK_FALSE(lim.try_acquire(armor::priority::normal));
}

TEST_CASE("adaptive_limit queue: a full queue refuses a critical caller too, unless its reserve has room",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  // Limit 4: critical up to 4, normal below 2; room for two normal waiters.
  queue_limit lim{{.initial_limit = 4, .min_limit = 4, .max_limit = 4, .normal_share = 0.5,
                   .sheddable_share = 0.5, .max_queue = 2, .max_wait = 1s},
                  clock};
  armor::context normal(armor::timestamp{});
  armor::context critical(armor::timestamp{}, {.priority = armor::priority::critical});
  auto h1 = lim.admit(critical);
  auto h2 = lim.admit(critical);
  auto h3 = lim.admit(critical);
  auto h4 = lim.admit(critical);
  REQUIRE(h4.kind == ak::admitted);
  test_waiter n1, n2, c1;
  auto qn1 = lim.enqueue(normal, n1);
  auto qn2 = lim.enqueue(normal, n2);
  REQUIRE(qn2.kind == ak::queued);
  // Full of normal waiters: a critical caller is refused, it takes no place.
  auto qc1 = lim.enqueue(critical, c1);
  CHECK(qc1.kind == ak::rejected);
  CHECK(qc1.code == armor::errc::concurrency_limited);
  CHECK(lim.queued() == 2);
  // With room under the critical threshold it still enters at once.
  h4.permit.release();  // 4 -> 3: not below the normal threshold, kept free
  CHECK(n1.wakes == 0);
  test_waiter c2;
  auto qc2 = lim.enqueue(critical, c2);
  CHECK(qc2.kind == ak::admitted);
  CHECK(lim.in_flight() == 4);
  CHECK_FALSE(qn1.permit.leave_queue());
  CHECK_FALSE(qn2.permit.leave_queue());
  CHECK(lim.queued() == 0);
}

TEST_CASE("adaptive_limit queue: a limit that rises at a window's close wakes as many waiters as it has room for",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  queue_limit lim{{.initial_limit = 2, .min_limit = 1, .max_limit = 10, .window = 10ms, .min_samples = 1,
                   .normal_share = 1, .sheddable_share = 1, .max_queue = 8, .max_wait = 1s,
                   .algorithm = {.increase = 3}},
                  clock};
  armor::context ctx(armor::timestamp{});
  auto h1 = lim.admit(ctx);
  auto h2 = lim.admit(ctx);
  test_waiter w[5];
  std::vector<queued_admission> q;
  for (auto& each : w) q.push_back(lim.enqueue(ctx, each));
  CHECK(lim.queued() == 5);
  // h1 ends within the window: its slot goes to w[0].
  lim.record(std::move(h1.permit), armor::verdict::success(), armor::timestamp{5ms});
  CHECK(w[0].wakes == 1);
  CHECK(lim.in_flight() == 2);
  // The window closes: 2 in flight of 2, one sample: AIMD adds 3, room for 3 more.
  lim.update(armor::timestamp{10ms});
  CHECK(lim.limit() == 5);
  CHECK(w[1].wakes == 1);
  CHECK(w[2].wakes == 1);
  CHECK(w[3].wakes == 1);
  CHECK(w[4].wakes == 0);
  CHECK(lim.in_flight() == 5);
  CHECK(lim.queued() == 1);
  for (int i = 0; i < 4; ++i) CHECK(q[static_cast<std::size_t>(i)].permit.leave_queue());
  CHECK_FALSE(q[4].permit.leave_queue());
  CHECK(lim.in_flight() == 5);
}

TEST_CASE("adaptive_limit queue in a pipeline: a queued call waits max_wait, then fails with concurrency_limited",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  queue_limit lim{{.initial_limit = 1, .min_limit = 1, .max_limit = 1, .max_queue = 2, .max_wait = 200ms}, clock};
  auto p = armor::pipeline{clock, std::ref(lim)};
  auto holder = lim.try_acquire().permit();
  int calls = 0;
  auto r = p.try_execute([&] { return ++calls; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::concurrency_limited);
  CHECK(clock.now().time_since_epoch() == 200ms);  // waited exactly max_wait, in virtual time
  CHECK(calls == 0);
  CHECK(lim.queued() == 0);  // it left the queue
  CHECK(lim.in_flight() == 1);
  CHECK(lim.stats().abandoned == 1);

  // The deadline cuts a wait short: deadline_exceeded at the deadline.
  auto d = armor::pipeline{clock, armor::deadline{50ms}, std::ref(lim)};
  CHECK(d.try_execute([] { return 1; }).code() == armor::errc::deadline_exceeded);
  CHECK(clock.now().time_since_epoch() == 250ms);
  // A per-call timeout does the same.
  CHECK(p.try_execute([] { return 1; }, {.timeout = 40ms}).code() == armor::errc::deadline_exceeded);
  CHECK(clock.now().time_since_epoch() == 290ms);
  // A sheddable call does not wait at all.
  CHECK(p.try_execute([] { return 1; }, {.priority = armor::priority::sheddable}).code() ==
        armor::errc::concurrency_limited);
  CHECK(clock.now().time_since_epoch() == 290ms);
  CHECK(lim.stats().abandoned == 3);
  CHECK(lim.queued() == 0);
}

namespace {
// Releases a held permit when it hears a caller queue: the slot is handed
// over while the caller is in the queue, before the driver waits.
struct release_on_queued {
  armor::adaptive_limit_permit* holder = nullptr;
  std::vector<armor::adaptive_limit_event_kind>* heard = nullptr;
  void operator()(const armor::adaptive_limit_event& e) const noexcept {
    try {
      heard->push_back(e.kind);
    } catch (...) {
    }
    if (e.kind == armor::adaptive_limit_event_kind::queued) holder->release();
  }
};
}  // namespace

TEST_CASE("adaptive_limit queue in a pipeline: a slot handed over while queued runs the call; events queued, abandoned",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  armor::adaptive_limit_permit holder;
  std::vector<armor::adaptive_limit_event_kind> heard;
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock, release_on_queued> lim{
      {.initial_limit = 1, .min_limit = 1, .max_limit = 1, .window = 1s, .min_samples = 1, .max_queue = 1,
       .max_wait = 100ms},
      clock, release_on_queued{&holder, &heard}};
  auto p = armor::pipeline{clock, std::ref(lim)};
  holder = lim.try_acquire().permit();
  REQUIRE(holder);
  const auto r = p.try_execute([&] {
    clock.advance(7ms);
    return lim.in_flight();
  });
  REQUIRE(r);
  CHECK(*r == 1);
  CHECK(clock.now().time_since_epoch() == 7ms);  // it did not wait out max_wait
  CHECK(lim.in_flight() == 0);
  using k = armor::adaptive_limit_event_kind;
  CHECK(heard == std::vector<k>{k::queued});

  // Unserved: queued, then abandoned (the holder is gone: take the slot again).
  auto again = lim.try_acquire().permit();  // (the listener releases `holder`, now empty)
  CHECK(p.try_execute([] { return 1; }).code() == armor::errc::concurrency_limited);
  CHECK(heard == std::vector<k>{k::queued, k::queued, k::abandoned});
  CHECK(clock.now().time_since_epoch() == 107ms);
  // The window (1 s) has not closed; the served call was timed from when it left the queue.
  clock.advance(1s);
  again.release();
  lim.update(armor::to_timestamp(clock.now()));
  CHECK(lim.stats().mean_latency == 7ms);
}

TEST_CASE("keyed<adaptive_limit> with a queue: a key's callers queue and give up after max_wait",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  using limit_type = armor::adaptive_limit<armor::gradient_limit, armor::manual_clock>;
  armor::keyed<limit_type> per_host{
      {.initial_limit = 1, .min_limit = 1, .max_limit = 1, .max_queue = 2, .max_wait = 80ms}, {}, clock};
  auto p = armor::pipeline{clock, std::ref(per_host)};
  auto a = per_host.get("a");
  auto holder = a->try_acquire().permit();
  CHECK(p.try_execute([] { return 1; }, {.key = "a"}).code() == armor::errc::concurrency_limited);
  CHECK(clock.now().time_since_epoch() == 80ms);
  CHECK(a->queued() == 0);
  CHECK(p.execute([] { return 2; }, {.key = "b"}) == 2);

  // Policy level: a queued keyed permit that was granted holds the slot.
  armor::context ctx(armor::timestamp{}, {.key = "a"});
  REQUIRE(per_host.admit(ctx).kind == ak::queue);
  test_waiter w;
  auto q = per_host.enqueue(ctx, w);
  REQUIRE(q.kind == ak::queued);
  holder.release();
  CHECK(w.wakes == 1);
  CHECK(q.permit.leave_queue());
  CHECK(a->in_flight() == 1);
  per_host.settle(ctx, std::move(q.permit), armor::verdict::success());
  CHECK(a->in_flight() == 0);
}
