// One pipeline shared by several threads: every call is admitted and settled
// exactly once, on a manual clock advanced concurrently.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct counting_policy {
  using permit_type = armor::no_permit;
  std::atomic<long> admitted{0};
  std::atomic<long> successes{0};
  std::atomic<long> failures{0};
  armor::admission<> admit(armor::context&) noexcept {
    admitted.fetch_add(1, std::memory_order_relaxed);
    return armor::admission<>::admit();
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict& v) noexcept {
    (v.ok() ? successes : failures).fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace

TEST_CASE("a shared pipeline admits and settles every call exactly once under threads") {
  constexpr int threads = 4;
  constexpr int calls_per_thread = 20000;
  armor::manual_clock clock;
  counting_policy counter;
  const auto p = armor::pipeline{clock, armor::deadline{1h}, std::ref(counter)};
  std::atomic<long> thrown{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < calls_per_thread; ++i) {
        clock.advance(1us);
        auto r = p.try_execute([&]() -> int {
          if ((i + t) % 7 == 0) throw std::runtime_error("odd one out");
          return i;
        });
        if (!r.has_value()) thrown.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : pool) th.join();
  const long total = static_cast<long>(threads) * calls_per_thread;
  CHECK(counter.admitted.load() == total);
  CHECK(counter.successes.load() + counter.failures.load() == total);
  CHECK(counter.failures.load() == thrown.load());
  CHECK(clock.now().time_since_epoch() == std::chrono::microseconds(total));
}
