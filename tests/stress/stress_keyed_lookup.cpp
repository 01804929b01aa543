// keyed's lookup without the shard lock (a key held is found and pinned
// through the directory, with a compare-and-swap on the entry's count)
// racing everything that frees or reuses entries: inserts into a full map
// (idle and LRU eviction, reclaiming from other shards), expiry, erase(),
// evict_idle(), handles held across evictions, a table growing while
// pinned entries keep a shard over its share, and the map destroyed while
// other threads still hold handles. Race-free under ThreadSanitizer; every
// handle holds the key it was asked for (an entry freed and reused for
// another key is never returned), and the counters add up at the end.
// Threads run a fixed number of iterations and never wait for each other;
// a watchdog aborts a run that hangs.
#include <armor/keyed.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using keyed_buckets = armor::keyed<armor::token_bucket<armor::manual_clock>>;

// Short keys sit in the entry, long ones (over 15 characters) are allocated.
std::string key_of(std::size_t i) {
  std::string k = (i % 3 == 0) ? "a-rather-long-client-name-" : "k";
  k += std::to_string(i);
  return k;
}

// Aborts the process if the test body has not finished in `limit`: a hang
// is a failure, not a timeout to wait out.
class watchdog {
 public:
  explicit watchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
          const auto until = std::chrono::steady_clock::now() + limit;
          while (!done_.load(std::memory_order_acquire)) {
            if (std::chrono::steady_clock::now() > until) {
              std::fputs("stress_keyed_lookup: watchdog expired (a hang)\n", stderr);
              std::abort();
            }
            std::this_thread::sleep_for(50ms);
          }
        }) {}
  ~watchdog() {
    done_.store(true, std::memory_order_release);
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE("keyed lookups without the lock race eviction, expiry, erase and reuse of entries") {
  const watchdog dog(600s);
  constexpr int threads = 3;
  constexpr int iterations = 6000;
  constexpr std::size_t key_space = 200;
  armor::manual_clock clock;
  // 48 keys in 4 shards, 200 in use: entries are evicted and their memory
  // reused all along; expiring 3 ms after their last use.
  keyed_buckets m{{.rate = {1, 1s}, .burst = 2}, {.max_keys = 48, .shards = 4, .expire_after = 3ms}, clock};
  std::atomic<int> wrong_keys{0};
  std::atomic<int> finished{0};

  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919 + 1);
      std::vector<std::optional<keyed_buckets::handle>> held(6);
      for (int i = 0; i < iterations; ++i) {
        // Mostly a small hot set (found without the lock), sometimes any key.
        const std::size_t k = rng() % 4 == 0 ? rng() % key_space : rng() % 24;
        const std::string key = key_of(k);
        switch (rng() % 16) {
          case 0: (void)m.erase(key); break;
          case 1: {
            auto h = m.find(key);
            if (h && h.key() != key) wrong_keys.fetch_add(1, std::memory_order_relaxed);
            break;
          }
          case 2: {  // hold a handle across later evictions, or let one go
            auto& slot = held[rng() % held.size()];
            if (slot) {
              slot.reset();
            } else {
              slot.emplace(m.get(key));
              if (slot->key() != key) wrong_keys.fetch_add(1, std::memory_order_relaxed);
            }
            break;
          }
          default: {
            auto h = m.get(key);
            if (h.key() != key) wrong_keys.fetch_add(1, std::memory_order_relaxed);
            (void)h->try_acquire();
            break;
          }
        }
        // Every entry held is still the key it was taken for.
        for (const auto& slot : held) {
          if (slot && slot->key().empty()) wrong_keys.fetch_add(1, std::memory_order_relaxed);
        }
      }
      finished.fetch_add(1, std::memory_order_release);
    });
  }
  std::thread housekeeper([&] {
    int rounds = 0;
    // At least a few rounds, even if the workers finish first.
    while (finished.load(std::memory_order_acquire) < threads || rounds < 20) {
      clock.advance(1ms);
      if (rounds % 4 == 0) (void)m.evict_idle();
      std::size_t visited = 0;
      m.for_each([&](std::string_view key, const auto&) {
        if (key.empty()) wrong_keys.fetch_add(1, std::memory_order_relaxed);
        ++visited;
      });
      (void)visited;
      (void)m.stats();
      ++rounds;
      std::this_thread::yield();
    }
  });
  for (auto& w : workers) w.join();
  housekeeper.join();

  CHECK(wrong_keys.load() == 0);
  const auto st = m.stats();
  CHECK(st.created - st.removed() == st.keys);
  CHECK(st.created > 48);  // entries were created again after leaving
  CHECK(st.removed() > 0);
  CHECK(m.size() <= 48 + threads * 7);  // over max_keys only by entries held and racing inserts
}

TEST_CASE("a keyed map destroyed while other threads still hold and release its entries") {
  const watchdog dog(600s);
  constexpr int rounds = 40;
  constexpr int threads = 2;
  for (int r = 0; r < rounds; ++r) {
    armor::manual_clock clock;
    auto m = std::make_unique<keyed_buckets>(armor::token_bucket_options{.rate = {10, 1s}, .burst = 10},
                                             armor::keyed_options{.max_keys = 16, .shards = 2}, clock);
    std::vector<std::vector<keyed_buckets::handle>> held(threads);
    for (int t = 0; t < threads; ++t) {
      for (std::size_t i = 0; i < 12; ++i) held[static_cast<std::size_t>(t)].push_back(m->get(key_of(i * 2 + t)));
    }
    (void)m->erase(key_of(0));  // held, no longer in the table
    std::atomic<int> started{0};
    std::vector<std::thread> users;
    for (int t = 0; t < threads; ++t) {
      users.emplace_back([&, t] {
        started.fetch_add(1, std::memory_order_relaxed);
        auto& mine = held[static_cast<std::size_t>(t)];
        for (auto& h : mine) {
          (void)h->try_acquire();
          h.reset();  // the last of them frees the map's memory, whichever thread it is
        }
      });
    }
    m.reset();  // while the users may still be releasing theirs
    for (auto& u : users) u.join();
    CHECK(started.load() == threads);
  }
}
