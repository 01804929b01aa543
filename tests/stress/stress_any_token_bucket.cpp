// Threads share one any_token_bucket built from memory:, with keys (new keys
// made while others are used) and the bucket without one, while another
// thread changes the rate back and forth and sets the burst to what it is
// (the memory backend then reconfigures every key held under the shards'
// locks). The clock never moves, so nothing refills and a change keeps the
// tokens: no key's bucket, nor the one without a key, grants more than its
// burst. Run under ThreadSanitizer (well under a second natively).
#include <armor/any_token_bucket.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("any_token_bucket (memory:): keys, the bucket without one and rate changes, concurrently") {
  constexpr int threads = 4;
  constexpr int keys = 16;
  constexpr std::int64_t burst = 20;
  const armor::manual_clock clock;
  armor::any_token_bucket<armor::manual_clock> b =
      armor::make_token_bucket("memory:?max_keys=64", {.rate = {1, 1h}, .burst = burst}, {.name = "stress"}, clock);
  auto p = armor::pipeline{clock, std::ref(b)};
  std::array<std::atomic<std::int64_t>, keys + 1> granted{};  // [keys]: the bucket without a key
  std::atomic<bool> stop{false};
  std::thread changer([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed) && i < 2000; ++i) {
      b.set_rate({1 + i % 2, 1h});
      b.set_burst(burst);
    }
  });
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      std::string key;
      for (int i = 0; i < 600; ++i) {
        const int k = (i * 7 + t) % (keys + 1);
        if (k == keys) {
          if (b.try_acquire()) granted[keys].fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        key = "client-";
        key += std::to_string(k);
        const bool ok = i % 2 == 0 ? static_cast<bool>(b.try_acquire(key, 1))
                                   : p.try_execute([] { return 1; }, {.key = key}).has_value();
        if (ok) granted[static_cast<std::size_t>(k)].fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& c : callers) c.join();
  stop.store(true);
  changer.join();
  for (std::size_t k = 0; k <= keys; ++k) {
    INFO("key " << k);
    CHECK(granted[k].load() >= 1);
    CHECK(granted[k].load() <= burst);
  }
  CHECK(b.burst() == burst);
}
