// Listeners and stats under concurrency. Several threads share one policy;
// afterwards, exactly:
//
//   - backoff: a retry event is heard once per retry and a give_up event once
//     per call that did not succeed, with the reason the counters give (a retry
//     budget makes budget refusals happen alongside exhaustion and
//     non-retryable failures);
//   - quota_tracker: each alert threshold fires once per period however many
//     threads cross it together, and stats() counts the same alerts and
//     every refusal;
//   - keyed::for_each, run while other threads insert, use and erase keys,
//     never visits a key twice in one pass and never sees a freed instance.
//
// (The breaker's listener is held to "once per transition" by
// stress_circuit_breaker.cpp.) Run under ThreadSanitizer; no sleeps: time
// moves only through manual clocks.
#include <armor/backoff.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;
constexpr auto relaxed = std::memory_order_relaxed;

// xorshift64*: one stream per thread.
struct rng {
  std::uint64_t s;
  std::uint32_t operator()() noexcept {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<std::uint32_t>((s * 0x2545F4914F6CDD1DULL) >> 32);
  }
};

// Called concurrently: atomics only.
struct retry_counts {
  std::atomic<std::uint64_t> retries{0};
  std::array<std::atomic<std::uint64_t>, 5> gave_up{};  // by backoff_stop

  void operator()(const armor::backoff_event& e) noexcept {
    if (e.kind == armor::backoff_event_kind::retry) {
      retries.fetch_add(1, relaxed);
    } else {
      gave_up[static_cast<std::size_t>(e.stop)].fetch_add(1, relaxed);
    }
  }
};

}  // namespace

TEST_CASE("stress: backoff listeners hear every retry and give-up exactly once") {
  armor::manual_clock clock;
  retry_counts heard;
  armor::backoff policy{{.max_attempts = 4,
                         .initial = 1ms,
                         .jitter = armor::jitter_mode::none,
                         .budget = armor::retry_budget{.max_tokens = 20, .token_ratio = 1.0},
                         .count_calls = true},
                        armor::seeded_rng{7}, std::ref(heard)};
  // invalid_argument is a permanent failure; any other error a retryable one.
  const auto p = armor::pipeline{clock, armor::classify{[](const std::error_code& ec) {
                                   if (!ec) return armor::verdict::success();
                                   if (ec == std::errc::invalid_argument) return armor::verdict::permanent_failure(ec);
                                   return armor::verdict::failure(ec);
                                 }},
                                 std::ref(policy)};
  constexpr int calls = 4000;

  std::array<std::uint64_t, threads> failed_calls{};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      rng r{0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(t + 1)};
      for (int i = 0; i < calls; ++i) {
        // An outage first (90 % of attempts fail: the budget runs dry and
        // refuses retries), then a flaky upstream (35 % fail: the budget
        // refills, and some calls fail every attempt). 5 % are permanent.
        const std::uint32_t fail_percent = i < calls / 4 ? 90 : 35;
        auto result = p.try_execute([&]() -> std::error_code {
          const std::uint32_t x = r() % 100;
          if (x >= fail_percent) return {};
          if (x < 5) return std::make_error_code(std::errc::invalid_argument);
          return std::make_error_code(std::errc::io_error);
        });
        if (!result || *result) ++failed_calls[static_cast<std::size_t>(t)];
      }
    });
  }
  for (auto& th : pool) th.join();

  const armor::backoff_stats s = policy.stats();
  CHECK(s.calls == static_cast<std::uint64_t>(threads * calls));
  CHECK(heard.retries.load() == s.retries);
  CHECK(heard.gave_up[static_cast<std::size_t>(armor::backoff_stop::exhausted)].load() == s.exhausted);
  CHECK(heard.gave_up[static_cast<std::size_t>(armor::backoff_stop::budget)].load() == s.budget_refusals);
  CHECK(heard.gave_up[static_cast<std::size_t>(armor::backoff_stop::deadline)].load() == s.deadline_stops);
  CHECK(heard.gave_up[static_cast<std::size_t>(armor::backoff_stop::non_retryable)].load() == s.non_retryable);
  CHECK(heard.gave_up[static_cast<std::size_t>(armor::backoff_stop::refused)].load() == s.refusal_stops);
  std::uint64_t failed = 0;
  for (const std::uint64_t f : failed_calls) failed += f;
  CHECK(failed == s.gave_up());
  // Every kind of give-up happened, so each equality above was tested.
  CHECK(s.exhausted > 0);
  CHECK(s.budget_refusals > 0);
  CHECK(s.non_retryable > 0);
  CHECK(s.retries > 0);
}

namespace {

struct alert_counts {
  // [period][threshold]: periods are minutes since the start.
  static constexpr int periods = 20;
  std::array<std::array<std::atomic<int>, 4>, periods> fired{};
  std::atomic<int> out_of_range{0};
  armor::manual_clock::time_point start{};

  void operator()(const armor::quota_tracker_event& a) noexcept {
    // resets_at is the end of the period the alert belongs to.
    const auto minute = std::chrono::duration_cast<std::chrono::minutes>(a.resets_at.time_since_epoch() -
                                                                         start.time_since_epoch()).count() - 1;
    const int k = a.threshold == 0.5 ? 0 : a.threshold == 0.8 ? 1 : a.threshold == 0.9 ? 2 : a.threshold == 1.0 ? 3 : -1;
    if (minute < 0 || minute >= periods || k < 0) {
      out_of_range.fetch_add(1, relaxed);
      return;
    }
    fired[static_cast<std::size_t>(minute)][static_cast<std::size_t>(k)].fetch_add(1, relaxed);
  }
};

}  // namespace

TEST_CASE("stress: quota alerts fire once per threshold and period; stats count them and the refusals") {
  armor::manual_clock clock;
  alert_counts heard;
  heard.start = clock.now();
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_minute(500)}, .alerts = {0.5, 0.8, 0.9, 1.0}}, clock,
                             armor::memory_quota_storage{}, std::ref(heard)};
  std::array<long, threads> refused{};
  std::array<long, threads> granted{};
  std::barrier sync(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int period = 0; period < alert_counts::periods; ++period) {
        // Everyone consumes until refused three times: the minute fills up.
        int refusals = 0;
        while (refusals < 3) {
          if (quota.try_consume(1)) {
            ++granted[static_cast<std::size_t>(t)];
          } else {
            ++refusals;
            ++refused[static_cast<std::size_t>(t)];
          }
        }
        sync.arrive_and_wait();
        if (t == 0) clock.advance(1min);
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& th : pool) th.join();

  long total_granted = 0;
  long total_refused = 0;
  for (int t = 0; t < threads; ++t) {
    total_granted += granted[static_cast<std::size_t>(t)];
    total_refused += refused[static_cast<std::size_t>(t)];
  }
  CHECK(total_granted == 500L * alert_counts::periods);
  CHECK(heard.out_of_range.load() == 0);
  int fired_once = 0;
  for (const auto& period : heard.fired) {
    for (const auto& cell : period) fired_once += cell.load() == 1 ? 1 : 0;
  }
  CHECK(fired_once == alert_counts::periods * 4);
  const armor::quota_tracker_stats s = quota.stats();
  CHECK(s.alerts == static_cast<std::uint64_t>(alert_counts::periods * 4));
  CHECK(s.exhausted == static_cast<std::uint64_t>(total_refused));
  CHECK(s.rejected() == s.exhausted);
}

TEST_CASE("stress: keyed::for_each while keys are inserted, used and erased") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> limits{{.rate = {1, 1s}, .burst = 4},
                                                                {.max_keys = 256, .shards = 4}, clock};
  std::atomic<bool> stop{false};
  std::atomic<long> duplicates{0};
  std::atomic<long> bad_values{0};
  std::atomic<long> passes{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads - 1; ++t) {
    pool.emplace_back([&, t] {
      rng r{0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(t + 1)};
      for (int i = 0; i < 20000; ++i) {
        std::string key = "k";  // appended, not "k" + ...: GCC 12 -O3 warns (-Wrestrict, a false positive)
        key += std::to_string(r() % 400);
        if (r() % 8 == 0) {
          (void)limits.erase(key);
        } else {
          (void)limits.get(key)->try_acquire(1);
        }
      }
    });
  }
  pool.emplace_back([&] {
    std::set<std::string> seen;
    while (!stop.load(relaxed)) {
      seen.clear();
      limits.for_each([&](std::string_view key, const auto& bucket) {
        if (!seen.insert(std::string(key)).second) duplicates.fetch_add(1, relaxed);
        const std::int64_t a = bucket.available(armor::to_timestamp(clock.now()));
        if (a < 0 || a > 4) bad_values.fetch_add(1, relaxed);
      });
      passes.fetch_add(1, relaxed);
    }
  });
  for (int t = 0; t < threads - 1; ++t) pool[static_cast<std::size_t>(t)].join();
  stop.store(true, relaxed);
  pool.back().join();

  CHECK(passes.load() > 0);
  CHECK(duplicates.load() == 0);
  CHECK(bad_values.load() == 0);
  long visited = 0;
  limits.for_each([&](std::string_view, const auto&) { ++visited; });
  CHECK(static_cast<std::size_t>(visited) == limits.size());
}
