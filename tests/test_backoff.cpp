// armor::backoff: retries with backoff and jitter, Retry-After, deadlines,
// the retry budget, listeners and stats. Every test runs on a manual_clock:
// the driver "sleeps" by moving it, so schedules are checked exactly.
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/stats.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

struct transient : std::runtime_error {
  explicit transient(int n) : std::runtime_error("transient " + std::to_string(n)), attempt(n) {}
  int attempt;
};

/// Records when each attempt started (clock time) and fails every time.
struct failing_op {
  std::vector<nanoseconds>* starts;
  int operator()(const armor::context& ctx) const {
    starts->push_back(ctx.now().time_since_epoch());
    throw transient(static_cast<int>(ctx.attempt()));
  }
};

/// The gaps between consecutive attempt starts.
std::vector<nanoseconds> gaps(const std::vector<nanoseconds>& starts) {
  std::vector<nanoseconds> g;
  for (std::size_t i = 1; i < starts.size(); ++i) g.push_back(starts[i] - starts[i - 1]);
  return g;
}

/// The message of the armor::error that building a backoff from `o` throws.
std::string refusal(const armor::backoff_options& o) {
  try {
    armor::backoff b{o};
    (void)b;
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// A listener that records everything it hears (single-threaded tests:
/// push_back may throw only on memory exhaustion, which ends the test).
struct recording_listener {
  std::vector<armor::backoff_event> events;    ///< all of them, in order
  std::vector<armor::backoff_event> retries;   ///< kind retry
  std::vector<armor::backoff_event> give_ups;  ///< kind give_up

  void operator()(const armor::backoff_event& e) noexcept {
    events.push_back(e);
    (e.kind == armor::backoff_event_kind::retry ? retries : give_ups).push_back(e);
  }
};

/// A listener that looks only at retries.
struct retry_counter {
  int retries = 0;
  void operator()(const armor::backoff_event& e) noexcept {
    if (e.kind == armor::backoff_event_kind::retry) ++retries;
  }
};

/// A listener that may throw: refused at compile time.
struct throwing_listener {
  void operator()(const armor::backoff_event&) {}
};

}  // namespace

// ---------------------------------------------------------------- the type

TEST_CASE("backoff is a looping policy built from designated options") {
  armor::backoff b{{.max_attempts = 4, .initial = 100ms, .max_delay = 5s}};
  static_assert(std::is_same_v<decltype(b), armor::backoff<armor::thread_rng, armor::no_listener>>);
  static_assert(armor::looping_policy<decltype(b)>);
  static_assert(std::is_nothrow_move_constructible_v<decltype(b)>);
  static_assert(!std::is_copy_constructible_v<decltype(b)>);
  static_assert(std::is_empty_v<armor::thread_rng>);
  CHECK(b.options().max_attempts == 4);
  CHECK(b.options().initial == 100ms);
  CHECK(b.options().max_delay == 5s);

  armor::backoff defaults{};
  CHECK(defaults.options().max_attempts == 3);
  CHECK(defaults.options().schedule == armor::backoff_schedule::exponential);
  CHECK(defaults.options().jitter == armor::jitter_mode::full);
  CHECK_FALSE(defaults.stats().has_budget);
  CHECK(defaults.stats().budget_tokens == 0.0);

  armor::backoff seeded{{}, armor::seeded_rng{1}};
  static_assert(std::is_same_v<decltype(seeded), armor::backoff<armor::seeded_rng>>);
  armor::backoff mt{{}, std::mt19937_64{1}};
  static_assert(std::is_same_v<decltype(mt), armor::backoff<std::mt19937_64>>);
}

TEST_CASE("a generator held by std::ref is the one drawn from") {
  armor::seeded_rng shared{11};
  const armor::seeded_rng before = shared;
  const armor::backoff_options opts{.max_attempts = 3};
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{opts, std::ref(shared)}};
  std::vector<nanoseconds> starts;
  (void)p.try_execute(failing_op{&starts});

  armor::seeded_rng replay = before;
  const armor::backoff reference{opts};
  const nanoseconds first = reference.delay(1, replay());
  const nanoseconds second = reference.delay(2, replay());
  CHECK(gaps(starts) == std::vector<nanoseconds>{first, second});
  CHECK(shared() == replay());  // two draws were taken from `shared`
}

TEST_CASE("bad options are refused at construction with a message naming the option") {
  CHECK(contains(refusal({.max_attempts = 0}), "max_attempts must be at least 1"));
  CHECK(contains(refusal({.initial = -1ms}), "initial must not be negative"));
  CHECK(contains(refusal({.max_delay = -1ms}), "max_delay must not be negative"));
  CHECK(contains(refusal({.initial = 2s, .max_delay = 1s}), "initial must not exceed max_delay"));
  CHECK(contains(refusal({.multiplier = 0.5}), "multiplier must be a finite number >= 1"));
  CHECK(contains(refusal({.multiplier = std::nan("")}), "multiplier"));
  CHECK(contains(refusal({.multiplier = HUGE_VAL}), "multiplier"));
  CHECK(contains(refusal({.jitter_fraction = -0.1}), "jitter_fraction must be within [0, 1]"));
  CHECK(contains(refusal({.jitter_fraction = 1.5}), "jitter_fraction"));
  CHECK(contains(refusal({.jitter_fraction = std::nan("")}), "jitter_fraction"));
  CHECK(contains(refusal({.max_retry_after = -1s}), "max_retry_after must not be negative"));
  CHECK(contains(refusal({.max_refusal_wait = -1ns}), "max_refusal_wait must not be negative"));
  CHECK(contains(refusal({.budget = armor::retry_budget{.max_tokens = 0}}), "budget.max_tokens"));
  CHECK(contains(refusal({.budget = armor::retry_budget{.token_ratio = 0.0}}), "budget.token_ratio"));
  CHECK(contains(refusal({.budget = armor::retry_budget{.max_tokens = 2, .token_ratio = 3.0}}), "budget.token_ratio"));
  CHECK(contains(refusal({.schedule = static_cast<armor::backoff_schedule>(9)}), "schedule"));
  CHECK(contains(refusal({.jitter = static_cast<armor::jitter_mode>(9)}), "jitter"));
  CHECK(contains(refusal({.max_attempts = 0}), "armor::backoff: "));

  // The edges are accepted.
  CHECK(refusal({.max_attempts = 1}) == "(accepted)");
  CHECK(refusal({.initial = 0ns, .multiplier = 1.0, .max_delay = 0ns}) == "(accepted)");
  CHECK(refusal({.jitter_fraction = 0.0}) == "(accepted)");
  CHECK(refusal({.jitter_fraction = 1.0}) == "(accepted)");
  CHECK(refusal({.max_refusal_wait = 0ns}) == "(accepted)");
  CHECK(refusal({.max_refusal_wait = nanoseconds::max()}) == "(accepted)");
  CHECK(refusal({.budget = armor::retry_budget{.max_tokens = 1, .token_ratio = 1.0}}) == "(accepted)");
}

// ---------------------------------------------------------------- schedules

TEST_CASE("an exponential schedule without jitter runs at 100 ms, 200 ms, 400 ms, 800 ms") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 5, .initial = 100ms, .max_delay = 5s,
                                                  .jitter = armor::jitter_mode::none}}};
  std::vector<nanoseconds> starts;
  auto r = p.try_execute(failing_op{&starts});
  REQUIRE(starts.size() == 5);
  CHECK(gaps(starts) == std::vector<nanoseconds>{100ms, 200ms, 400ms, 800ms});
  CHECK(clock.now().time_since_epoch() == 1500ms);
  CHECK(r.code() == armor::errc::retries_exhausted);
}

TEST_CASE("the exponential schedule saturates at max_delay") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 7, .initial = 100ms, .multiplier = 3.0,
                                                  .max_delay = 1s, .jitter = armor::jitter_mode::none}}};
  std::vector<nanoseconds> starts;
  (void)p.try_execute(failing_op{&starts});
  CHECK(gaps(starts) == std::vector<nanoseconds>{100ms, 300ms, 900ms, 1s, 1s, 1s});
}

TEST_CASE("constant and linear schedules") {
  armor::manual_clock clock;
  std::vector<nanoseconds> starts;
  SECTION("constant") {
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 4, .schedule = armor::backoff_schedule::constant,
                                                    .initial = 250ms, .jitter = armor::jitter_mode::none}}};
    (void)p.try_execute(failing_op{&starts});
    CHECK(gaps(starts) == std::vector<nanoseconds>{250ms, 250ms, 250ms});
  }
  SECTION("linear, capped") {
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 6, .schedule = armor::backoff_schedule::linear,
                                                    .initial = 100ms, .max_delay = 350ms,
                                                    .jitter = armor::jitter_mode::none}}};
    (void)p.try_execute(failing_op{&starts});
    CHECK(gaps(starts) == std::vector<nanoseconds>{100ms, 200ms, 300ms, 350ms, 350ms});
  }
}

TEST_CASE("a fractional multiplier gives the exact products") {
  armor::backoff b{{.initial = 100ms, .multiplier = 1.5, .max_delay = 10s, .jitter = armor::jitter_mode::none}};
  CHECK(b.base_delay(0) == 100ms);  // "attempt 0" is read as the first
  CHECK(b.base_delay(1) == 100ms);
  CHECK(b.base_delay(2) == 150ms);
  CHECK(b.base_delay(3) == 225ms);
  CHECK(b.base_delay(4) == 337500us);
  CHECK(b.base_delay(5) == 506250us);
  armor::backoff flat{{.initial = 100ms, .multiplier = 1.0, .jitter = armor::jitter_mode::none}};
  CHECK(flat.base_delay(1000) == 100ms);
}

TEST_CASE("attempt 10000 saturates at max_delay and never overflows or goes negative") {
  const unsigned huge[] = {64U, 1000U, 10000U, UINT_MAX};
  for (const unsigned n : huge) {
    CAPTURE(n);
    armor::backoff exp2{{.initial = 100ms, .max_delay = 5s, .jitter = armor::jitter_mode::none}};
    CHECK(exp2.delay(n, 0) == 5s);
    armor::backoff exp_small{{.initial = 1ns, .multiplier = 1.0001, .max_delay = 5s, .jitter = armor::jitter_mode::none}};
    CHECK(exp_small.delay(n, 0) >= 1ns);
    CHECK(exp_small.delay(n, 0) <= 5s);
    armor::backoff lin{{.schedule = armor::backoff_schedule::linear, .initial = 1s, .max_delay = nanoseconds::max(),
                        .jitter = armor::jitter_mode::none}};
    CHECK(lin.delay(n, 0) > 0ns);
    armor::backoff no_cap{{.initial = 1s, .max_delay = nanoseconds::max(), .jitter = armor::jitter_mode::none}};
    CHECK(no_cap.delay(n, 0) == nanoseconds::max());
    armor::backoff full_no_cap{{.initial = 1s, .max_delay = nanoseconds::max()}};
    CHECK(full_no_cap.delay(n, ~std::uint64_t{0}) >= 0ns);
    CHECK(full_no_cap.delay(n, ~std::uint64_t{0}) < nanoseconds::max());
    armor::backoff prop{{.initial = 1s, .max_delay = nanoseconds::max(), .jitter = armor::jitter_mode::proportional,
                         .jitter_fraction = 1.0}};
    CHECK(prop.delay(n, 0) == 0ns);
    CHECK(prop.delay(n, ~std::uint64_t{0}) < nanoseconds::max());
    CHECK(prop.delay(n, ~std::uint64_t{0}) > nanoseconds::max() / 2);
    armor::backoff decor{{.schedule = armor::backoff_schedule::decorrelated, .initial = 1s,
                          .max_delay = nanoseconds::max()}};
    CHECK(decor.delay(n, ~std::uint64_t{0}, nanoseconds::max()) >= 1s);
  }
  armor::backoff lin{{.schedule = armor::backoff_schedule::linear, .initial = 1s, .max_delay = nanoseconds::max(),
                      .jitter = armor::jitter_mode::none}};
  CHECK(lin.delay(10000, 0) == 10000s);
  CHECK(lin.delay(UINT_MAX, 0) == nanoseconds{std::int64_t{UINT_MAX} * 1'000'000'000});
}

TEST_CASE("with a seeded generator the jittered schedule is exactly reproducible") {
  const armor::backoff_options opts{.max_attempts = 6, .initial = 100ms, .max_delay = 2s};
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{opts, armor::seeded_rng{42}}};
  std::vector<nanoseconds> starts;
  (void)p.try_execute(failing_op{&starts});

  // The same seed, drawn by hand through the pure delay function.
  const armor::backoff reference{opts};
  armor::seeded_rng rng{42};
  std::vector<nanoseconds> expected;
  for (unsigned n = 1; n <= 5; ++n) expected.push_back(reference.delay(n, rng()));
  CHECK(gaps(starts) == expected);
  for (unsigned n = 1; n <= 5; ++n) {
    CHECK(expected[n - 1] < reference.base_delay(n));  // full jitter: below the base
  }

  // And a second run with the same seed repeats it.
  armor::manual_clock clock2;
  auto p2 = armor::pipeline{clock2, armor::backoff{opts, armor::seeded_rng{42}}};
  std::vector<nanoseconds> starts2;
  (void)p2.try_execute(failing_op{&starts2});
  CHECK(starts2 == starts);
}

TEST_CASE("the decorrelated schedule grows from the previous delay") {
  const armor::backoff_options opts{.max_attempts = 8, .schedule = armor::backoff_schedule::decorrelated,
                                    .initial = 100ms, .max_delay = 3s};
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{opts, armor::seeded_rng{7}}};
  std::vector<nanoseconds> starts;
  (void)p.try_execute(failing_op{&starts});
  const auto g = gaps(starts);
  REQUIRE(g.size() == 7);

  const armor::backoff reference{opts};
  armor::seeded_rng rng{7};
  nanoseconds previous{};
  for (unsigned n = 1; n <= 7; ++n) {
    const nanoseconds d = reference.delay(n, rng(), previous);
    CAPTURE(n);
    CHECK(g[n - 1] == d);
    CHECK(d >= 100ms);
    CHECK(d < std::min<nanoseconds>(3 * std::max<nanoseconds>(previous, 100ms), 3s + 1ns));
    previous = d;
  }
}

TEST_CASE("the pure delay function: same inputs, same delay; no random word for no jitter") {
  const armor::backoff b{{.initial = 1s, .max_delay = 1min}};
  CHECK(b.delay(3, 12345) == b.delay(3, 12345));
  CHECK(b.delay(3, 0) == 0ns);  // full jitter with the smallest word
  CHECK(b.delay(3, ~std::uint64_t{0}) < 4s);
  CHECK(b.delay(3, ~std::uint64_t{0}) > 4s - 1us);

  armor::backoff eq{{.initial = 1s, .max_delay = 1min, .jitter = armor::jitter_mode::equal}};
  CHECK(eq.delay(2, 0) == 1s);
  CHECK(eq.delay(2, ~std::uint64_t{0}) < 2s);

  armor::backoff prop{{.initial = 1s, .max_delay = 1min, .jitter = armor::jitter_mode::proportional,
                       .jitter_fraction = 0.25}};
  CHECK(prop.delay(1, 0) == 750ms);
  CHECK(prop.delay(1, std::uint64_t{1} << 63) == 1s);
  CHECK(prop.delay(1, ~std::uint64_t{0}) < 1250ms);

  // Proportional jitter near max_delay draws below max_delay; it does not
  // pile the draws above it onto max_delay.
  armor::backoff capped{{.initial = 1s, .max_delay = 1s, .jitter = armor::jitter_mode::proportional,
                         .jitter_fraction = 0.5}};
  CHECK(capped.delay(1, 0) == 500ms);
  CHECK(capped.delay(1, ~std::uint64_t{0}) < 1s);
  CHECK(capped.delay(1, ~std::uint64_t{0}) > 999ms);
}

// ---------------------------------------------------------------- jitter statistics

namespace {

struct sample_summary {
  nanoseconds min = nanoseconds::max();
  nanoseconds max = nanoseconds::min();
  double mean = 0;
  double variance = 0;
  std::array<int, 10> buckets{};  // over [lo, hi)
};

template <class B>
sample_summary sample(const B& b, unsigned attempt, nanoseconds previous, nanoseconds lo, nanoseconds hi, int draws,
                      std::uint64_t seed) {
  armor::seeded_rng rng{seed};
  sample_summary s;
  double sum = 0;
  double sum_sq = 0;
  const double width = static_cast<double>((hi - lo).count());
  for (int i = 0; i < draws; ++i) {
    const nanoseconds d = b.delay(attempt, rng(), previous);
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
    const double x = static_cast<double>(d.count());
    sum += x;
    sum_sq += x * x;
    if (width > 0) {
      const auto k = static_cast<std::size_t>(static_cast<double>((d - lo).count()) / width * 10.0);
      if (k < s.buckets.size()) ++s.buckets[k];
    }
  }
  s.mean = sum / draws;
  s.variance = sum_sq / draws - s.mean * s.mean;
  return s;
}

/// Checks that a sample looks uniform on [lo, hi): bounds, mean, variance and
/// a flat histogram, each within tolerances several standard errors wide.
void check_uniform(const sample_summary& s, nanoseconds lo, nanoseconds hi, int draws) {
  const double a = static_cast<double>(lo.count());
  const double b = static_cast<double>(hi.count());
  const double w = b - a;
  CHECK(s.min >= lo);
  CHECK(s.max < hi);
  CHECK(static_cast<double>(s.min.count()) < a + 0.001 * w);  // reaches both ends
  CHECK(static_cast<double>(s.max.count()) > b - 0.001 * w);
  CHECK(std::abs(s.mean - (a + b) / 2) < 0.01 * w);
  CHECK(std::abs(s.variance / (w * w / 12) - 1) < 0.03);
  for (const int count : s.buckets) CHECK(std::abs(count - draws / 10) < draws / 200);  // within 5 %
}

}  // namespace

TEST_CASE("jitter modes over 100 000 draws: bounds and mean within tolerance") {
  constexpr int draws = 100'000;
  SECTION("none: exactly the schedule") {
    armor::backoff b{{.initial = 1s, .max_delay = 1min, .jitter = armor::jitter_mode::none}};
    const auto s = sample(b, 3, {}, 0s, 4s, draws, 1);
    CHECK(s.min == 4s);
    CHECK(s.max == 4s);
  }
  SECTION("full: uniform in [0, d)") {
    armor::backoff b{{.initial = 1s, .max_delay = 1min, .jitter = armor::jitter_mode::full}};
    check_uniform(sample(b, 3, {}, 0s, 4s, draws, 2), 0s, 4s, draws);
  }
  SECTION("equal: uniform in [d/2, d)") {
    armor::backoff b{{.initial = 1s, .max_delay = 1min, .jitter = armor::jitter_mode::equal}};
    check_uniform(sample(b, 3, {}, 2s, 4s, draws, 3), 2s, 4s, draws);
  }
  SECTION("proportional: uniform in [d(1-f), d(1+f))") {
    armor::backoff b{{.initial = 1s, .max_delay = 1min, .jitter = armor::jitter_mode::proportional,
                      .jitter_fraction = 0.2}};
    check_uniform(sample(b, 3, {}, 3200ms, 4800ms, draws, 4), 3200ms, 4800ms, draws);
  }
  SECTION("decorrelated: uniform in [initial, 3 * previous)") {
    armor::backoff b{{.schedule = armor::backoff_schedule::decorrelated, .initial = 100ms, .max_delay = 1min}};
    check_uniform(sample(b, 5, 1s, 100ms, 3s, draws, 5), 100ms, 3s, draws);
  }
  SECTION("decorrelated: the first retry draws from [initial, 3 * initial)") {
    armor::backoff b{{.schedule = armor::backoff_schedule::decorrelated, .initial = 100ms, .max_delay = 1min}};
    check_uniform(sample(b, 1, {}, 100ms, 300ms, draws, 6), 100ms, 300ms, draws);
  }
}

TEST_CASE("the per-thread generator is uniform and differs between threads") {
  armor::thread_rng rng;
  constexpr int draws = 100'000;
  double sum = 0;
  for (int i = 0; i < draws; ++i) sum += armor::detail::unit_interval(rng());
  CHECK(std::abs(sum / draws - 0.5) < 0.005);

  std::uint64_t here = rng();
  std::uint64_t there = 0;
  std::thread t([&] { there = armor::thread_rng{}(); });
  t.join();
  CHECK(here != there);
  CHECK(rng() != here);
}

TEST_CASE("seeded_rng repeats its sequence and copies continue from where they stand") {
  armor::seeded_rng a{99};
  armor::seeded_rng b{99};
  for (int i = 0; i < 10; ++i) CHECK(a() == b());
  armor::seeded_rng c = a;
  CHECK(c() == a());
  CHECK(armor::seeded_rng{1}() != armor::seeded_rng{2}());
}

// ---------------------------------------------------------------- what is retried

TEST_CASE("execute rethrows the operation's own exception after the last attempt") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3}}};
  int calls = 0;
  try {
    (void)p.execute([&]() -> int { throw transient(++calls); });
    FAIL("execute should have thrown");
  } catch (const transient& e) {
    CHECK(e.attempt == 3);  // the last failure, not the first
  }
  CHECK(calls == 3);
}

TEST_CASE("try_execute returns retries_exhausted with the last exception as the cause") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 4, .count_calls = true}}};
  int calls = 0;
  auto r = p.try_execute([&]() -> int { throw transient(++calls); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::retries_exhausted);
  REQUIRE(r.error().cause);
  try {
    std::rethrow_exception(r.error().cause);
  } catch (const transient& e) {
    CHECK(e.attempt == 4);
  }
  CHECK(p.layer<0>().stats().exhausted == 1);
  CHECK(p.layer<0>().stats().retries == 3);
  CHECK(p.layer<0>().stats().attempts() == 4);
  CHECK(p.layer<0>().stats().failed_attempts() == 4);
  CHECK(p.layer<0>().stats().gave_up() == 1);
}

TEST_CASE("a success after failures returns the value and counts a success after retry") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock,
                           armor::backoff{{.max_attempts = 5, .jitter = armor::jitter_mode::none, .count_calls = true}}};
  int calls = 0;
  const int v = p.execute([&]() -> int {
    if (++calls < 3) throw transient(calls);
    return 42;
  });
  CHECK(v == 42);
  CHECK(calls == 3);
  CHECK(clock.now().time_since_epoch() == 300ms);
  const auto s = p.layer<0>().stats();
  CHECK(s.calls == 1);
  CHECK(s.retries == 2);
  CHECK(s.successes_after_retry == 1);
  CHECK(s.exhausted == 0);
  CHECK(s.failed_attempts() == 2);
}

TEST_CASE("a success on the first attempt neither waits nor counts a retry") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.count_calls = true}}};
  for (int i = 0; i < 5; ++i) CHECK(p.execute([] { return 1; }) == 1);
  CHECK(clock.now().time_since_epoch() == 0ns);
  const auto s = p.layer<0>().stats();
  CHECK(s.calls == 5);
  CHECK(s.attempts() == 5);
  CHECK(s.retries == 0);
  CHECK(s.successes_after_retry == 0);
}

TEST_CASE("by default calls are not counted, so the success path writes nothing shared") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{}};
  CHECK_FALSE(p.layer<0>().options().count_calls);
  for (int i = 0; i < 5; ++i) (void)p.execute([] { return 1; });
  int calls = 0;
  (void)p.try_execute([&]() -> int { throw transient(++calls); });
  const auto s = p.layer<0>().stats();
  CHECK(s.calls == 0);
  CHECK(s.retries == 2);
  CHECK(s.exhausted == 1);
}

TEST_CASE("a non-retryable failure ends the call after one attempt") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                             return armor::verdict::permanent_failure();
                           }},
                           armor::backoff{{.max_attempts = 5}}};
  int calls = 0;
  auto r = p.try_execute([&]() -> int { throw transient(++calls); });
  CHECK(calls == 1);
  CHECK(r.code() == armor::errc::operation_failed);
  CHECK(clock.now().time_since_epoch() == 0ns);
  CHECK(p.layer<0>().stats().non_retryable == 1);
  CHECK(p.layer<0>().stats().retries == 0);
  CHECK_THROWS_AS(p.execute([&]() -> int { throw transient(++calls); }), transient);
  CHECK(calls == 2);
}

TEST_CASE("a stop wins over a requested delay: a non-retryable verdict with retry_after is not retried") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                             return armor::verdict::failure(armor::errc::operation_failed, false, 1s);
                           }},
                           armor::backoff{{.max_attempts = 5}}};
  int calls = 0;
  auto r = p.try_execute([&]() -> int { throw transient(++calls); });
  CHECK(calls == 1);
  CHECK(clock.now().time_since_epoch() == 0ns);
  CHECK(r.retry_after() == 1s);  // the hint still reaches the caller
}

TEST_CASE("a cancelled attempt is never retried, even when marked retryable") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                             return armor::verdict{armor::outcome::cancelled, true, 1ms, armor::errc::cancelled};
                           }},
                           armor::backoff{{.max_attempts = 5}}};
  int calls = 0;
  (void)p.try_execute([&]() -> int { throw transient(++calls); });
  CHECK(calls == 1);
  CHECK(p.layer<0>().stats().non_retryable == 1);
}

TEST_CASE("error values are retried and the last value is returned") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3}}};
  const std::array<std::errc, 3> errors{std::errc::connection_reset, std::errc::timed_out,
                                        std::errc::connection_refused};
  int calls = 0;
  const std::error_code last = p.execute([&] { return std::make_error_code(errors[calls++]); });
  CHECK(calls == 3);
  CHECK(last == std::errc::connection_refused);

  calls = 0;
  auto r = p.try_execute([&] { return std::make_error_code(errors[calls++]); });
  CHECK(calls == 3);
  REQUIRE(r.has_value());  // armor never swallows a value the operation produced
  CHECK(*r == std::errc::connection_refused);

  calls = 0;
  const std::error_code ok = p.execute([&] { return calls++ == 0 ? std::make_error_code(errors[0]) : std::error_code{}; });
  CHECK(calls == 2);
  CHECK_FALSE(ok);
}

TEST_CASE("max_attempts = 1 never retries") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 1}}};
  int calls = 0;
  auto r = p.try_execute([&]() -> int { throw transient(++calls); });
  CHECK(calls == 1);
  CHECK(r.code() == armor::errc::operation_failed);
  CHECK(p.layer<0>().stats().exhausted == 1);
}

// ---------------------------------------------------------------- Retry-After

namespace {

/// An operation's result carrying a server hint.
struct reply {
  int status;
  std::optional<nanoseconds> retry_after;
};

auto hint_classifier() {
  return armor::classify{[](const reply& r) {
    if (r.status < 500) return armor::verdict::success();
    if (r.retry_after) return armor::verdict::retry_later(*r.retry_after);
    return armor::verdict::failure();
  }};
}

}  // namespace

TEST_CASE("Retry-After takes precedence over the computed delay") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, hint_classifier(),
                           armor::backoff{{.max_attempts = 4, .initial = 100ms, .jitter = armor::jitter_mode::none}}};
  std::vector<nanoseconds> starts;
  const auto r = p.execute([&](const armor::context& ctx) {
    starts.push_back(ctx.now().time_since_epoch());
    switch (starts.size()) {
      case 1: return reply{503, 3s};      // longer than the schedule's 100 ms
      case 2: return reply{503, 10ms};    // shorter than the schedule's 200 ms
      case 3: return reply{503, {}};      // no hint: the schedule's 400 ms
      default: return reply{200, {}};
    }
  });
  CHECK(r.status == 200);
  CHECK(gaps(starts) == std::vector<nanoseconds>{3s, 10ms, 400ms});
}

TEST_CASE("Retry-After is capped by max_retry_after; zero and negative hints retry at once") {
  armor::manual_clock clock;
  recording_listener heard;
  auto p = armor::pipeline{clock, hint_classifier(),
                           armor::backoff{{.max_attempts = 4, .max_retry_after = 30s}, armor::thread_rng{},
                                          std::ref(heard)}};
  std::vector<nanoseconds> starts;
  (void)p.execute([&](const armor::context& ctx) {
    starts.push_back(ctx.now().time_since_epoch());
    switch (starts.size()) {
      case 1: return reply{503, 1h};
      case 2: return reply{503, 0s};
      case 3: return reply{503, -5s};
      default: return reply{200, {}};
    }
  });
  CHECK(gaps(starts) == std::vector<nanoseconds>{30s, 0s, 0s});
  REQUIRE(heard.retries.size() == 3);
  CHECK(heard.retries[0].delay == 30s);
}

TEST_CASE("a Retry-After that does not fit the deadline stops at once with the last failure") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, hint_classifier(), armor::deadline{2s}, armor::backoff{{.max_attempts = 5}}};
  int calls = 0;
  auto r = p.try_execute([&] {
    ++calls;
    return reply{503, 5s};
  });
  CHECK(calls == 1);
  CHECK(clock.now().time_since_epoch() == 0ns);  // no sleeping in vain
  REQUIRE(r.has_value());                        // the 503 itself is returned
  CHECK(r->status == 503);
  CHECK(p.layer<1>().stats().deadline_stops == 1);
  CHECK(p.layer<1>().stats().retries == 0);

  // Thrown failures: the caller gets the operation's exception and the hint.
  auto p2 = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                              return armor::verdict::retry_later(5s);
                            }},
                            armor::deadline{2s}, armor::backoff{{.max_attempts = 5}}};
  auto r2 = p2.try_execute([]() -> int { throw transient(1); });
  CHECK(clock.now().time_since_epoch() == 0ns);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.code() == armor::errc::operation_failed);  // one attempt: nothing was retried
  CHECK(r2.retry_after() == 5s);
  CHECK(r2.error().from_operation());
}

TEST_CASE("a computed delay that would end at or past the deadline is not slept") {
  armor::manual_clock clock;
  std::vector<nanoseconds> starts;
  SECTION("ends past the deadline") {
    // Attempts at 0 and 100 ms; the next delay (200 ms) would end at 300 ms > 250 ms.
    auto p = armor::pipeline{clock, armor::deadline{250ms},
                             armor::backoff{{.max_attempts = 10, .initial = 100ms, .jitter = armor::jitter_mode::none}}};
    auto r = p.try_execute(failing_op{&starts});
    CHECK(starts == std::vector<nanoseconds>{0ms, 100ms});
    CHECK(clock.now().time_since_epoch() == 100ms);
    CHECK(r.code() == armor::errc::retries_exhausted);
    CHECK(p.layer<1>().stats().deadline_stops == 1);
    CHECK_THROWS_AS(p.execute(failing_op{&starts}), transient);
  }
  SECTION("ends exactly at the deadline") {
    auto p = armor::pipeline{clock, armor::deadline{300ms},
                             armor::backoff{{.max_attempts = 10, .initial = 100ms, .jitter = armor::jitter_mode::none}}};
    (void)p.try_execute(failing_op{&starts});
    CHECK(starts == std::vector<nanoseconds>{0ms, 100ms});
  }
  SECTION("fits just before the deadline") {
    auto p = armor::pipeline{clock, armor::deadline{300ms + 1ns},
                             armor::backoff{{.max_attempts = 10, .initial = 100ms, .jitter = armor::jitter_mode::none}}};
    (void)p.try_execute(failing_op{&starts});
    CHECK(starts == std::vector<nanoseconds>{0ms, 100ms, 300ms});
  }
  SECTION("a caller's timeout is a deadline too") {
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 10, .initial = 100ms,
                                                    .jitter = armor::jitter_mode::none}}};
    (void)p.try_execute(failing_op{&starts}, {.timeout = 250ms});
    CHECK(starts == std::vector<nanoseconds>{0ms, 100ms});
  }
}

TEST_CASE("slow failing attempts eat the deadline: the policy measures from the failure") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{1s},
                           armor::backoff{{.max_attempts = 10, .initial = 100ms, .jitter = armor::jitter_mode::none}}};
  std::vector<nanoseconds> starts;
  auto r = p.try_execute([&](const armor::context& ctx) -> int {
    starts.push_back(ctx.now().time_since_epoch());
    clock.advance(300ms);  // each attempt takes 300 ms
    throw transient(static_cast<int>(ctx.attempt()));
  });
  // 0-300, sleep 100, 400-700, sleep 200 would end at 900 < 1000: attempt at 900, fails at 1200 (a timeout).
  CHECK(starts == std::vector<nanoseconds>{0ms, 400ms, 900ms});
  CHECK(r.code() == armor::errc::retries_exhausted);
}

TEST_CASE("a deadline inside the retry layer is a per-attempt timeout") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{10s},
                           armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none}},
                           armor::deadline{500ms}};
  std::vector<nanoseconds> remaining;
  (void)p.try_execute([&](const armor::context& ctx) -> int {
    remaining.push_back(ctx.remaining());
    throw transient(1);
  });
  CHECK(remaining == std::vector<nanoseconds>{500ms, 500ms, 500ms});
}

TEST_CASE("an inner layer's refusal with a retry_after is retried after that time") {
  armor::manual_clock clock;
  armor_test::rejecting_policy limiter{armor::errc::rate_limited, 750ms, true};
  auto p = armor::pipeline{clock,
                           armor::backoff{{.max_attempts = 3, .budget = armor::retry_budget{.max_tokens = 2}}},
                           std::ref(limiter)};
  auto r = p.try_execute([] { return 1; });
  CHECK(limiter.admits == 3);
  CHECK(clock.now().time_since_epoch() == 1500ms);
  CHECK(r.code() == armor::errc::rate_limited);  // armor stopped the call
  CHECK(p.layer<0>().stats().budget_tokens == 2.0);  // refusals drain no tokens
}

// ---------------------------------------------------------------- refusals: which are worth waiting for

namespace {

using manual_breaker = armor::circuit_breaker<armor::manual_clock>;

/// A breaker on `clock` opened for 30 s by one failure.
void trip(manual_breaker& b, const armor::manual_clock& clock) {
  auto direct = armor::pipeline{clock, std::ref(b)};
  (void)direct.try_execute([]() -> int { throw transient(0); });
  REQUIRE(b.state() == armor::breaker_state::open);
}

}  // namespace

TEST_CASE("an open breaker inside a retry layer fails the call at once with circuit_open", "[backoff][refusal]") {
  armor::manual_clock clock;
  manual_breaker breaker{{.failure_threshold = 1, .open_for = 30s}, clock};
  trip(breaker, clock);
  recording_listener heard;
  armor::backoff retry{{.max_attempts = 4}, armor::thread_rng{}, std::ref(heard)};
  int calls = 0;
  const auto op = [&] { return ++calls; };
  const auto start = clock.now();

  std::optional<armor::result<int>> r;
  SECTION("without a deadline") {
    // Before: the call slept the breaker's 30 s, then ran as its probe.
    r = armor::pipeline{clock, std::ref(retry), std::ref(breaker)}.try_execute(op);
  }
  SECTION("with a deadline the open time would fit in") {
    r = armor::pipeline{clock, armor::deadline{60s}, std::ref(retry), std::ref(breaker)}.try_execute(op);
  }
  SECTION("with a deadline shorter than the open time") {
    // Before: also at once, but counted as a deadline stop.
    r = armor::pipeline{clock, armor::deadline{2s}, std::ref(retry), std::ref(breaker)}.try_execute(op);
  }
  SECTION("with a per-call timeout") {
    r = armor::pipeline{clock, std::ref(retry), std::ref(breaker)}.try_execute(op, {.timeout = 45s});
  }
  REQUIRE(r.has_value());
  REQUIRE_FALSE(r->has_value());
  CHECK(r->code() == armor::errc::circuit_open);
  CHECK(r->retry_after() == std::optional<nanoseconds>{30s});  // the caller still learns when to come back
  CHECK(clock.now() == start);                                   // no wait at all
  CHECK(calls == 0);
  const armor::backoff_stats s = retry.stats();
  CHECK(s.refusal_stops == 1);
  CHECK(s.retries == 0);
  CHECK(s.deadline_stops == 0);
  CHECK(s.gave_up() == 1);
  REQUIRE(heard.give_ups.size() == 1);
  CHECK(heard.give_ups[0].stop == armor::backoff_stop::refused);
  CHECK(heard.give_ups[0].attempt == 1);
  CHECK(heard.give_ups[0].last.code == armor::errc::circuit_open);
  CHECK(heard.retries.empty());
}

TEST_CASE("a short token wait inside a retry layer is still waited for", "[backoff][refusal]") {
  armor::manual_clock clock;
  // 50 a second, burst 1, no waiting in the bucket: the second call is
  // refused with rate_limited and a retry_after of 20 ms.
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {50, 1s}, .burst = 1}, clock};
  armor::backoff<> retry{};
  SECTION("without a deadline") {
    auto p = armor::pipeline{clock, std::ref(retry), std::ref(bucket)};
    CHECK(p.execute([] { return 1; }) == 1);
    CHECK(p.execute([] { return 2; }) == 2);
  }
  SECTION("with a deadline") {
    auto p = armor::pipeline{clock, armor::deadline{2s}, std::ref(retry), std::ref(bucket)};
    CHECK(p.execute([] { return 1; }) == 1);
    CHECK(p.execute([] { return 2; }) == 2);
  }
  CHECK(clock.now().time_since_epoch() == 20ms);  // waited exactly for the token
  CHECK(retry.stats().retries == 1);
  CHECK(retry.stats().refusal_stops == 0);
}

TEST_CASE("a refusal is waited for up to max_refusal_wait, inclusive", "[backoff][refusal]") {
  armor::manual_clock clock;
  SECTION("at the limit: retried after its retry_after") {
    armor_test::rejecting_policy limiter{armor::errc::rate_limited, 1s, true};
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2}}, std::ref(limiter)};
    CHECK(p.try_execute([] { return 1; }).code() == armor::errc::rate_limited);
    CHECK(limiter.admits == 2);
    CHECK(clock.now().time_since_epoch() == 1s);
    CHECK(p.layer<0>().stats().exhausted == 1);
  }
  SECTION("a nanosecond past it: the call ends at once") {
    armor_test::rejecting_policy limiter{armor::errc::rate_limited, 1s + 1ns, true};
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2}}, std::ref(limiter)};
    CHECK(p.try_execute([] { return 1; }).code() == armor::errc::rate_limited);
    CHECK(limiter.admits == 1);
    CHECK(clock.now().time_since_epoch() == 0s);
    CHECK(p.layer<0>().stats().refusal_stops == 1);
  }
  SECTION("max_refusal_wait = 0: no refusal is waited for, not even one due now") {
    armor_test::rejecting_policy limiter{armor::errc::rate_limited, 1ns, true};
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .max_refusal_wait = 0ns}}, std::ref(limiter)};
    CHECK(p.try_execute([] { return 1; }).code() == armor::errc::rate_limited);
    CHECK(limiter.admits == 1);
  }
  SECTION("a not-retryable refusal is never retried, whatever its retry_after") {
    armor_test::rejecting_policy limiter{armor::errc::quota_exhausted, 1ms, false};
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3}}, std::ref(limiter)};
    CHECK(p.try_execute([] { return 1; }).code() == armor::errc::quota_exhausted);
    CHECK(limiter.admits == 1);
    CHECK(p.layer<0>().stats().non_retryable == 1);
  }
}

TEST_CASE("a refusal that does not say when to come back is not waited for", "[backoff][refusal]") {
  armor::manual_clock clock;
  // A full fail-fast bulkhead cannot know when a holder leaves (its queue is
  // the way to wait for a slot).
  armor::bulkhead<> slots{{.max_concurrent = 1}};
  auto holder = slots.try_acquire().permit();
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 4, .max_refusal_wait = 1h}}, std::ref(slots)};
  int calls = 0;
  auto r = p.try_execute([&] { return ++calls; });
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(calls == 0);
  CHECK(clock.now().time_since_epoch() == 0s);  // before: three delays of the schedule
  CHECK(p.layer<0>().stats().refusal_stops == 1);
  CHECK(p.layer<0>().stats().retries == 0);
}

TEST_CASE("max_refusal_wait set high waits out an open breaker; the retry is its probe", "[backoff][refusal]") {
  armor::manual_clock clock;
  manual_breaker breaker{{.failure_threshold = 1, .open_for = 30s}, clock};
  trip(breaker, clock);
  const auto start = clock.now();
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2, .max_refusal_wait = 1min}}, std::ref(breaker)};
  CHECK(p.execute([] { return 7; }) == 7);
  CHECK(clock.now() - start == 30s);
  CHECK(breaker.state() == armor::breaker_state::closed);
  CHECK(p.layer<0>().stats().retries == 1);

  // Still bounded by the deadline.
  trip(breaker, clock);
  const auto again = clock.now();
  auto bounded = armor::pipeline{clock, armor::deadline{10s},
                                 armor::backoff{{.max_attempts = 2, .max_refusal_wait = 1min}}, std::ref(breaker)};
  CHECK(bounded.try_execute([] { return 7; }).code() == armor::errc::circuit_open);
  CHECK(clock.now() == again);
  CHECK(bounded.layer<1>().stats().deadline_stops == 1);
}

TEST_CASE("a throttled verdict is retried after its retry_after, and drains the budget like a failure") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::classify{[](const reply& r) {
                             if (r.status == 429) return armor::verdict::throttled(armor::errc::operation_failed, r.retry_after);
                             return armor::verdict::success();
                           }},
                           armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none,
                                           .budget = armor::retry_budget{.max_tokens = 10}}}};
  std::vector<nanoseconds> starts;
  const auto r = p.execute([&](const armor::context& ctx) {
    starts.push_back(ctx.now().time_since_epoch());
    switch (starts.size()) {
      case 1: return reply{429, 3s};   // the server's wait
      case 2: return reply{429, {}};   // none: the schedule's 200 ms
      default: return reply{200, {}};
    }
  });
  CHECK(r.status == 200);
  CHECK(gaps(starts) == std::vector<nanoseconds>{3s, 200ms});
  CHECK(p.layer<0>().stats().retries == 2);
  CHECK(p.layer<0>().stats().budget_tokens == 8.1);  // two answers drained one each; the success refilled 0.1
}

// ---------------------------------------------------------------- retry budget

TEST_CASE("the retry budget drains on failures, refuses retries at half, and refills on successes") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .initial = 0ns,
                                                  .budget = armor::retry_budget{.max_tokens = 10, .token_ratio = 0.5}}}};
  auto& policy = p.layer<0>();
  int calls = 0;
  const auto fail = [&]() -> int { throw transient(++calls); };
  const auto succeed = [&] {
    ++calls;
    return 1;
  };
  REQUIRE(policy.stats().budget_tokens == 10.0);  // starts full

  // Call 1: three attempts, 10 -> 9 -> 8 -> 7.
  (void)p.try_execute(fail);
  CHECK(calls == 3);
  CHECK(policy.stats().budget_tokens == 7.0);

  // Call 2: 7 -> 6 (retry), 6 -> 5: at half, the retry is refused.
  calls = 0;
  auto r = p.try_execute(fail);
  CHECK(calls == 2);
  CHECK(r.code() == armor::errc::retries_exhausted);
  CHECK(policy.stats().budget_tokens == 5.0);
  CHECK(policy.stats().budget_refusals == 1);

  // While the budget is low, first attempts still run; only retries are refused.
  for (int i = 0; i < 8; ++i) {
    calls = 0;
    auto r1 = p.try_execute(fail);
    CHECK(calls == 1);
    CHECK(r1.code() == armor::errc::operation_failed);
  }
  CHECK(policy.stats().budget_tokens == 0.0);  // never below zero
  CHECK(policy.stats().budget_refusals == 9);

  // Successes refill by token_ratio: 11 successes bring it to 5.5 > 5.
  for (int i = 0; i < 10; ++i) (void)p.execute(succeed);
  CHECK(policy.stats().budget_tokens == 5.0);
  calls = 0;
  (void)p.try_execute(fail);
  CHECK(calls == 1);  // 5 -> 4: still refused
  for (int i = 0; i < 3; ++i) (void)p.execute(succeed);
  CHECK(policy.stats().budget_tokens == 5.5);
  calls = 0;
  (void)p.try_execute(fail);  // 5.5 -> 4.5: refused again (the failure drains first)
  CHECK(calls == 1);

  for (int i = 0; i < 100; ++i) (void)p.execute(succeed);
  CHECK(policy.stats().budget_tokens == 10.0);  // never above max_tokens
  calls = 0;
  (void)p.try_execute(fail);
  CHECK(calls == 3);  // retries are back
}

TEST_CASE("non-retryable failures do not drain the budget") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                             return armor::verdict::permanent_failure();
                           }},
                           armor::backoff{{.budget = armor::retry_budget{}}}};
  for (int i = 0; i < 20; ++i) (void)p.try_execute([]() -> int { throw transient(1); });
  CHECK(p.layer<0>().stats().budget_tokens == 10.0);
}

TEST_CASE("a moved backoff keeps its counters and budget level; std::ref shares one policy") {
  armor::manual_clock clock;
  armor::backoff original{{.max_attempts = 2, .initial = 0ns, .budget = armor::retry_budget{}}};
  auto p1 = armor::pipeline{clock, std::ref(original)};
  auto p2 = armor::pipeline{clock, std::ref(original)};
  (void)p1.try_execute([]() -> int { throw transient(1); });
  (void)p2.try_execute([]() -> int { throw transient(1); });
  CHECK(original.stats().retries == 2);
  CHECK(original.stats().budget_tokens == 6.0);

  armor::backoff moved{std::move(original)};
  CHECK(moved.stats().retries == 2);
  CHECK(moved.stats().exhausted == 2);
  CHECK(moved.stats().has_budget);
  CHECK(moved.stats().budget_tokens == 6.0);
  CHECK(moved.options().max_attempts == 2);
}

// ---------------------------------------------------------------- listeners

TEST_CASE("the listener hears each retry with its attempt, delay and verdict, and the give-up") {
  armor::manual_clock clock;
  recording_listener heard;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .initial = 100ms,
                                                  .jitter = armor::jitter_mode::none},
                                                 armor::thread_rng{}, std::ref(heard)}};
  (void)p.try_execute([]() -> int { throw transient(1); });
  REQUIRE(heard.retries.size() == 2);
  CHECK(heard.retries[0].attempt == 1);
  CHECK(heard.retries[0].delay == 100ms);
  CHECK(heard.retries[0].last.kind == armor::outcome::failure);
  CHECK(heard.retries[1].attempt == 2);
  CHECK(heard.retries[1].delay == 200ms);
  REQUIRE(heard.give_ups.size() == 1);
  CHECK(heard.give_ups[0].attempt == 3);
  CHECK(heard.give_ups[0].stop == armor::backoff_stop::exhausted);

  (void)p.execute([] { return 1; });  // a success is neither a retry nor a give-up
  CHECK(heard.retries.size() == 2);
  CHECK(heard.give_ups.size() == 1);
}

TEST_CASE("give-up reasons: non-retryable, budget, deadline, refused") {
  armor::manual_clock clock;
  recording_listener heard;
  auto permanent = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                                     return armor::verdict::permanent_failure();
                                   }},
                                   armor::backoff{{}, armor::thread_rng{}, std::ref(heard)}};
  (void)permanent.try_execute([]() -> int { throw transient(1); });
  auto budgeted = armor::pipeline{clock, armor::backoff{{.budget = armor::retry_budget{.max_tokens = 1}},
                                                        armor::thread_rng{}, std::ref(heard)}};
  (void)budgeted.try_execute([]() -> int { throw transient(1); });
  auto bounded = armor::pipeline{clock, armor::deadline{1ms},
                                 armor::backoff{{.initial = 1s, .jitter = armor::jitter_mode::none},
                                                armor::thread_rng{}, std::ref(heard)}};
  (void)bounded.try_execute([]() -> int { throw transient(1); });
  armor_test::rejecting_policy open_breaker{armor::errc::circuit_open, 30s, true};
  // Three layers: with exactly two, clang's std::tuple<backoff<R, std::reference_wrapper<L>>, X> checks
  // whether the backoff is default-constructible, which instantiates `Listener{}` as a hard error.
  auto refused = armor::pipeline{clock, armor::deadline{1min}, armor::backoff{{}, armor::thread_rng{}, std::ref(heard)},
                                 std::ref(open_breaker)};
  (void)refused.try_execute([] { return 1; });
  REQUIRE(heard.give_ups.size() == 4);
  CHECK(heard.give_ups[0].stop == armor::backoff_stop::non_retryable);
  CHECK(heard.give_ups[1].stop == armor::backoff_stop::budget);
  CHECK(heard.give_ups[2].stop == armor::backoff_stop::deadline);
  CHECK(heard.give_ups[3].stop == armor::backoff_stop::refused);
  CHECK(heard.retries.empty());
}

TEST_CASE("a listener may look only at retry events") {
  armor::manual_clock clock;
  retry_counter counter;
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 4}, armor::seeded_rng{3}, std::ref(counter)}};
  (void)p.try_execute([]() -> int { throw transient(1); });
  CHECK(counter.retries == 3);
}

TEST_CASE("backoff events: a retry carries the attempt, the delay and the failed verdict; a give-up its stop") {
  armor::manual_clock clock;
  recording_listener heard;
  auto p = armor::pipeline{
      clock, armor::classify{[](const std::error_code& ec) {
        if (!ec) return armor::verdict::success();
        if (ec == std::errc::connection_refused) return armor::verdict::retry_later(3s, ec);
        if (ec == std::errc::timed_out) return armor::verdict{armor::outcome::timeout, true, std::nullopt, ec};
        return armor::verdict::failure(ec);
      }},
      armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none}, armor::thread_rng{},
                     std::ref(heard)}};
  const std::array<std::errc, 3> errors{std::errc::connection_refused, std::errc::timed_out, std::errc::io_error};
  int calls = 0;
  const std::error_code last = p.execute([&] { return std::make_error_code(errors[calls++]); });
  CHECK(last == std::errc::io_error);
  REQUIRE(heard.events.size() == 3);

  const armor::backoff_event& first = heard.events[0];
  CHECK(first.kind == armor::backoff_event_kind::retry);
  CHECK(first.attempt == 1);
  CHECK(first.delay == 3s);  // the verdict's retry_after, not the schedule's 100 ms
  CHECK(first.last.kind == armor::outcome::failure);
  CHECK(first.last.code == std::errc::connection_refused);
  CHECK(first.last.retry_after == std::optional<nanoseconds>{3s});

  const armor::backoff_event& second = heard.events[1];
  CHECK(second.kind == armor::backoff_event_kind::retry);
  CHECK(second.attempt == 2);
  CHECK(second.delay == 200ms);
  CHECK(second.last.kind == armor::outcome::timeout);
  CHECK(second.last.code == std::errc::timed_out);
  CHECK_FALSE(second.last.retry_after.has_value());

  const armor::backoff_event& end = heard.events[2];
  CHECK(end.kind == armor::backoff_event_kind::give_up);
  CHECK(end.attempt == 3);
  CHECK(end.stop == armor::backoff_stop::exhausted);
  CHECK(end.delay == 0ns);
  CHECK(end.last.kind == armor::outcome::failure);
  CHECK(end.last.code == std::errc::io_error);
  CHECK(clock.now().time_since_epoch() == 3200ms);

  // A non-retryable failure is one give-up event, with its code.
  heard = {};
  calls = 0;
  auto permanent = armor::pipeline{clock, armor::classify{[](const std::error_code& ec) {
                                     return ec ? armor::verdict::permanent_failure(ec) : armor::verdict::success();
                                   }},
                                   armor::backoff{{}, armor::thread_rng{}, std::ref(heard)}};
  (void)permanent.execute([] { return std::make_error_code(std::errc::permission_denied); });
  REQUIRE(heard.events.size() == 1);
  CHECK(heard.events[0].kind == armor::backoff_event_kind::give_up);
  CHECK(heard.events[0].attempt == 1);
  CHECK(heard.events[0].stop == armor::backoff_stop::non_retryable);
  CHECK(heard.events[0].last.code == std::errc::permission_denied);
  CHECK_FALSE(heard.events[0].last.retryable);
}

TEST_CASE("a backoff listener must be a noexcept callable of backoff_event") {
  static_assert(armor::listener_for<recording_listener, armor::backoff_event>);
  static_assert(armor::listener_for<std::reference_wrapper<recording_listener>, armor::backoff_event>);
  static_assert(!armor::listener_for<throwing_listener, armor::backoff_event>);
  static_assert(!armor::listener_for<int, armor::backoff_event>);
  // With a noexcept random source, next() cannot throw, listener or not.
  using loud = armor::backoff<armor::thread_rng, std::reference_wrapper<recording_listener>>;
  static_assert(noexcept(std::declval<loud&>().next(std::declval<const armor::context&>(),
                                                    std::declval<const armor::verdict&>(),
                                                    std::declval<loud::loop_state&>())));
  SUCCEED();
}

TEST_CASE("backoff enums have to_string") {
  CHECK(armor::to_string(armor::backoff_stop::non_retryable) == "non_retryable");
  CHECK(armor::to_string(armor::backoff_stop::exhausted) == "exhausted");
  CHECK(armor::to_string(armor::backoff_stop::budget) == "budget");
  CHECK(armor::to_string(armor::backoff_stop::deadline) == "deadline");
  CHECK(armor::to_string(armor::backoff_stop::refused) == "refused");
  CHECK(armor::to_string(armor::backoff_schedule::constant) == "constant");
  CHECK(armor::to_string(armor::backoff_schedule::linear) == "linear");
  CHECK(armor::to_string(armor::backoff_schedule::exponential) == "exponential");
  CHECK(armor::to_string(armor::backoff_schedule::decorrelated) == "decorrelated");
  CHECK(armor::to_string(armor::jitter_mode::none) == "none");
  CHECK(armor::to_string(armor::jitter_mode::full) == "full");
  CHECK(armor::to_string(armor::jitter_mode::equal) == "equal");
  CHECK(armor::to_string(armor::jitter_mode::proportional) == "proportional");
  CHECK(armor::to_string(armor::backoff_event_kind::retry) == "retry");
  CHECK(armor::to_string(armor::backoff_event_kind::give_up) == "give_up");
  static_assert(armor::to_string(armor::backoff_stop::budget) == "budget");
}

namespace {

/// "name metric" for each field of `s` that would be exported.
std::vector<std::string> exported_fields(const armor::backoff_stats& s) {
  std::vector<std::string> out;
  armor::detail::for_each_field<armor::backoff_stats>([&](const auto& f) {
    if (armor::detail::exported(f, s)) out.push_back(std::string(f.name) + " " + std::string(f.metric));
  });
  return out;
}

}  // namespace

TEST_CASE("backoff_stats describes its fields: calls only when counting, the budget's level only with a budget") {
  static_assert(armor::described_stats<armor::backoff_stats>);
  const std::vector<std::string> always{
      "retries armor_retry_attempts_total",
      "successes_after_retry armor_retry_successes_after_retry_total",
      "exhausted armor_retry_exhausted_total",
      "budget_refusals armor_retry_budget_refused_total",
      "deadline_stops armor_retry_deadline_stopped_total",
      "non_retryable armor_retry_non_retryable_total",
      "refusal_stops armor_retry_refusal_stopped_total",
  };

  const armor::backoff plain{};
  CHECK_FALSE(plain.stats().counting);
  CHECK_FALSE(plain.stats().has_budget);
  CHECK(exported_fields(plain.stats()) == always);

  const armor::backoff counting{{.count_calls = true}};
  CHECK(counting.stats().counting);
  std::vector<std::string> with_calls{"calls armor_retry_calls_total"};
  with_calls.insert(with_calls.end(), always.begin(), always.end());
  CHECK(exported_fields(counting.stats()) == with_calls);

  const armor::backoff budgeted{{.budget = armor::retry_budget{.max_tokens = 4}}};
  const armor::backoff_stats s = budgeted.stats();
  CHECK(s.has_budget);
  CHECK(s.budget_tokens == 4.0);
  std::vector<std::string> with_budget = always;
  with_budget.emplace_back("budget_tokens armor_retry_budget_tokens");
  CHECK(exported_fields(s) == with_budget);

  // The types: counters, and the level a gauge.
  armor::detail::for_each_field<armor::backoff_stats>([](const auto& f) {
    CAPTURE(std::string(f.name));
    CHECK(f.type == (f.name == "budget_tokens" ? armor::metric_type::gauge : armor::metric_type::counter));
    CHECK_FALSE(f.help.empty());
  });
}

// ---------------------------------------------------------------- the documented example

namespace {

// docs/backoff.md, "Worked example": retrying an HTTP GET.
struct response {
  int status = 0;
  std::optional<std::chrono::seconds> retry_after;  // parsed from the Retry-After header
  std::string body;
};

/// 408, 429 and 5xx are worth another try (with the server's Retry-After
/// when it sent one); any other 4xx is the caller's mistake: fail fast.
armor::verdict classify_response(const response& r) {
  if (r.status < 400) return armor::verdict::success();
  const bool transient_status = r.status == 408 || r.status == 429 || r.status >= 500;
  if (!transient_status) return armor::verdict::permanent_failure();
  if (r.retry_after) return armor::verdict::retry_later(*r.retry_after);
  return armor::verdict::failure();
}

/// A fake upstream: answers from a script, one response per call.
struct fake_upstream {
  std::vector<response> script;
  std::size_t next = 0;
  response get(const std::string&, nanoseconds) { return script.at(next++); }
};

}  // namespace

TEST_CASE("the documented HTTP example: 503s with Retry-After, then 200") {
  armor::manual_clock clock;
  fake_upstream upstream{{{503, std::chrono::seconds{2}, ""}, {500, {}, ""}, {200, {}, "hello"}}};
  auto github = armor::pipeline{
      clock,
      armor::classify{classify_response},
      armor::deadline{10s},
      armor::backoff{{.max_attempts = 4, .initial = 100ms, .max_delay = 5s, .max_retry_after = 30s}},
  };
  const response r = github.execute([&](const armor::context& ctx) {
    return upstream.get("https://api.github.com/repos/x/y", ctx.remaining());
  });
  CHECK(r.status == 200);
  CHECK(r.body == "hello");
  CHECK(upstream.next == 3);
  // 2 s from Retry-After, then a full-jittered delay below 200 ms.
  CHECK(clock.now().time_since_epoch() >= 2s);
  CHECK(clock.now().time_since_epoch() < 2200ms);

  fake_upstream missing{{{404, {}, "not found"}}};
  const response r404 = github.execute([&](const armor::context& ctx) { return missing.get("/nope", ctx.remaining()); });
  CHECK(r404.status == 404);  // returned at once, not retried
  CHECK(missing.next == 1);
}
