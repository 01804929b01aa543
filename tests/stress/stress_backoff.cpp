// One backoff policy (and its retry budget) shared by several threads, on a
// manual clock: the budget never leaves [0, max_tokens], never grants more
// retries during an outage than the bucket allows, and every call and attempt
// is counted exactly once. Run under ThreadSanitizer.
#include <armor/backoff.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;

struct outage : std::runtime_error {
  outage() : std::runtime_error("outage") {}
};

}  // namespace

TEST_CASE("during an outage the shared budget grants at most ceil(max_tokens / 2) - 1 retries in all") {
  constexpr int calls_per_thread = 5000;
  armor::manual_clock clock;
  const auto p = armor::pipeline{
      clock, armor::backoff{{.max_attempts = 5, .initial = 1ms, .budget = armor::retry_budget{.max_tokens = 100},
                             .count_calls = true},
                            armor::seeded_rng{1}}};
  std::atomic<long> operation_calls{0};
  std::atomic<long> successes{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < calls_per_thread; ++i) {
        auto r = p.try_execute([&]() -> int {
          operation_calls.fetch_add(1, std::memory_order_relaxed);
          throw outage();
        });
        if (r.has_value()) successes.fetch_add(1, std::memory_order_relaxed);  // Catch2 asserts only on the main thread
      }
    });
  }
  for (auto& th : pool) th.join();

  const auto s = p.layer<0>().stats();
  const long calls = static_cast<long>(threads) * calls_per_thread;
  CHECK(successes.load() == 0);
  // Each granted retry follows its own drain that left more than 50 tokens:
  // the levels 99..51 can each be left once, so at most 49 retries.
  CHECK(s.retries <= 49);
  CHECK(s.retries >= 1);
  CHECK(p.layer<0>().stats().budget_tokens == 0.0);
  CHECK(s.calls == static_cast<std::uint64_t>(calls));
  CHECK(static_cast<long>(s.attempts()) == operation_calls.load());
  CHECK(s.exhausted + s.budget_refusals == s.calls);
}

TEST_CASE("under mixed load the budget stays within [0, max_tokens] and every call ends one way") {
  constexpr int calls_per_thread = 20000;
  constexpr double max_tokens = 20;
  armor::manual_clock clock;
  const auto p = armor::pipeline{
      clock, armor::backoff{{.max_attempts = 3, .initial = 10us,
                             .budget = armor::retry_budget{.max_tokens = 20, .token_ratio = 0.2},
                             .count_calls = true}}};
  std::atomic<bool> done{false};
  std::atomic<long> out_of_range{0};
  std::atomic<long> operation_calls{0};
  std::atomic<long> first_try_successes{0};

  std::thread watcher([&] {
    while (!done.load(std::memory_order_relaxed)) {
      const double level = p.layer<0>().stats().budget_tokens;
      if (level < 0 || level > max_tokens) out_of_range.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < calls_per_thread; ++i) {
        int attempt = 0;
        auto r = p.try_execute([&]() -> int {
          operation_calls.fetch_add(1, std::memory_order_relaxed);
          ++attempt;
          // Bursts of failures: every 50th call of a thread fails 1..3 times.
          if ((i + t) % 50 < 3 && attempt <= (i + t) % 50 + 1) throw outage();
          if ((i * 7 + t) % 11 == 0 && attempt == 1) throw outage();
          return i;
        });
        if (r.has_value() && attempt == 1) first_try_successes.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : pool) th.join();
  done.store(true, std::memory_order_relaxed);
  watcher.join();

  const auto s = p.layer<0>().stats();
  const long calls = static_cast<long>(threads) * calls_per_thread;
  CHECK(out_of_range.load() == 0);
  CHECK(s.calls == static_cast<std::uint64_t>(calls));
  CHECK(static_cast<long>(s.attempts()) == operation_calls.load());
  CHECK(s.non_retryable == 0);
  CHECK(s.deadline_stops == 0);
  // Each call ends exactly one way.
  CHECK(static_cast<std::uint64_t>(first_try_successes.load()) + s.successes_after_retry + s.exhausted +
            s.budget_refusals ==
        s.calls);
  // The failure rate sits near the budget's threshold: it both grants and refuses.
  CHECK(s.retries > 0);
  CHECK(s.budget_refusals > 0);
}

TEST_CASE("seeded_rng and thread_rng can be drawn from by several threads at once") {
  armor::seeded_rng shared{5};
  std::vector<std::vector<std::uint64_t>> seen(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      armor::thread_rng own;
      for (int i = 0; i < 10000; ++i) {
        seen[static_cast<std::size_t>(t)].push_back(shared());
        (void)own();
      }
    });
  }
  for (auto& th : pool) th.join();
  // Concurrent draws from the seeded generator are all distinct steps of
  // one sequence (splitmix64's output is a bijection of its counter).
  std::vector<std::uint64_t> all;
  for (const auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
  armor::seeded_rng replay{5};
  std::vector<std::uint64_t> expected;
  for (std::size_t i = 0; i < all.size(); ++i) expected.push_back(replay());
  std::sort(expected.begin(), expected.end());
  CHECK(all == expected);
}
