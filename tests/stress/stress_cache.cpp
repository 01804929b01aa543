// Many threads through one armor::cache while they move a manual clock and a
// refresh worker runs the posted refreshes: on few keys (coalesced misses,
// one refresh at a time, stale answers on failures) and on many keys
// (eviction under the entry limit), and both at once in one cache; and
// readers against a writer on one small shard (slots reused by other keys
// all the time). Checks: every answer
// belongs to its key and is whole, no key's operation ever runs twice at
// once, the entry limit always holds.
// Run under ThreadSanitizer. Nothing waits for an event a preempted thread
// could prevent: the workers run a fixed number of calls, the helpers stop
// on a flag.
#include <armor/cache.hpp>

#include "armor_catch.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// A one-thread executor: post() queues, the worker runs until stopped and
// drained.
class worker_executor {
 public:
  worker_executor() : thread_([this] { loop(); }) {}
  worker_executor(const worker_executor&) = delete;
  worker_executor& operator=(const worker_executor&) = delete;
  ~worker_executor() {
    {
      const std::lock_guard lock(m_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void post(std::function<void()> f) {
    {
      const std::lock_guard lock(m_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;
      auto f = std::move(q_.front());
      q_.pop_front();
      lock.unlock();
      f();
      lock.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread thread_;
};

constexpr int threads = 6;
constexpr int keys = 3;          // the few-keys case
constexpr int calls = 4000;      // per thread
constexpr std::size_t limit = 256;  // the many-keys case's max_entries

struct key_state {
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<std::int64_t> serial{0};
};

void raise_max(std::atomic<int>& m, int v) {
  int cur = m.load(std::memory_order_relaxed);
  while (v > cur && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// A hot key's operation: records how many run at once for the key, yields
// a little, fails every fifth run, and answers a value that names its key.
auto hot_key_operation(key_state& ks, int k) {
  return [&ks, k]() -> std::int64_t {
    raise_max(ks.most, ks.inside.fetch_add(1, std::memory_order_acq_rel) + 1);
    const std::int64_t mine = ks.serial.fetch_add(1, std::memory_order_acq_rel) + 1;
    for (int spin = 0; spin < 20; ++spin) std::this_thread::yield();
    ks.inside.fetch_sub(1, std::memory_order_acq_rel);
    if (mine % 5 == 0) throw std::runtime_error("upstream down");
    return mine * keys + k;
  };
}

// One call on a hot key: every other call hands stale refreshes to the
// worker, the others refresh on the calling thread.
template <class Cache, class Executor>
auto call_hot_key(Cache& c, key_state& ks, int k, Executor& ex, int i) {
  auto op = hot_key_operation(ks, k);
  return (i % 2 == 0) ? c.try_execute(k, op, ex) : c.try_execute(k, op);
}

}  // namespace

TEST_CASE("stress: cache on few keys: one operation per key at a time, answers of the right key", "[cache]") {
  armor::manual_clock clock;
  armor::cache<int, std::int64_t, armor::manual_clock> c(
      {.max_age = 3s, .stale_while_revalidate = 3s, .stale_if_error = 20s, .max_entries = 16, .shards = 2}, clock);
  std::array<key_state, keys> state;
  std::atomic<std::uint64_t> wrong{0}, failed{0}, stale{0}, live{0}, fresh{0};
  {
    worker_executor ex;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < calls; ++i) {
          const int k = (i * 7 + t) % keys;
          auto r = call_hot_key(c, state[static_cast<std::size_t>(k)], k, ex, i);
          if (!r) {
            failed.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          if (**r % keys != k) wrong.fetch_add(1, std::memory_order_relaxed);
          switch (r->origin) {
            case armor::cache_origin::fresh: fresh.fetch_add(1, std::memory_order_relaxed); break;
            case armor::cache_origin::stale: stale.fetch_add(1, std::memory_order_relaxed); break;
            case armor::cache_origin::live: live.fetch_add(1, std::memory_order_relaxed); break;
          }
          if (i % 97 == 0) (void)c.purge_expired();
          if (i % 389 == 0) (void)c.erase(k);
          if (i % 16 == 0) clock.advance(std::chrono::milliseconds{500 + 100 * t});
        }
      });
    }
    for (auto& th : pool) th.join();
  }  // the executor drains its refreshes
  CHECK(wrong == 0);
  for (auto& ks : state) CHECK(ks.most.load() == 1);
  CHECK(fresh + stale + live + failed == std::uint64_t{threads} * calls);
  const auto st = c.stats();
  CHECK(st.entries <= keys);
  CHECK(st.hits == fresh);
  CHECK(st.stale_hits + st.stale_on_error >= stale);
  CHECK(c.flights().stats().in_flight == 0);
}

TEST_CASE("stress: cache on many keys: eviction keeps the entry limit while threads read and store", "[cache]") {
  armor::manual_clock clock;
  armor::cache<int, std::int64_t, armor::manual_clock> c({.max_age = 10s, .max_entries = limit, .shards = 8}, clock);
  std::atomic<std::uint64_t> wrong{0};
  std::atomic<std::uint64_t> over{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::uint32_t x = static_cast<std::uint32_t>(t) * 2654435761U + 1U;
      for (int i = 0; i < calls; ++i) {
        x = x * 1664525U + 1013904223U;
        // Half the calls on 64 hot keys, half on 4096 cold ones.
        const int k = (x >> 8) % 2 == 0 ? static_cast<int>((x >> 12) % 64) : 64 + static_cast<int>((x >> 12) % 4096);
        auto a = c.execute(k, [k] { return std::int64_t{k} * 3; });
        if (*a != std::int64_t{k} * 3) wrong.fetch_add(1, std::memory_order_relaxed);
        if (c.stats().entries > limit) over.fetch_add(1, std::memory_order_relaxed);
        if (t == 0 && i % 1000 == 0) clock.advance(3s);
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(wrong == 0);
  CHECK(over == 0);
  const auto st = c.stats();
  CHECK(st.entries <= limit);
  CHECK(st.evictions + st.expirations > 0);
  CHECK(st.hits + st.misses == std::uint64_t{threads} * calls);
}

TEST_CASE("stress: cache on few keys and many keys at once: coalescing and eviction in one cache", "[cache]") {
  // Half the threads on three hot keys whose operations fail now and then
  // (coalesced misses, refreshes, stale answers), half on 4096 cold keys
  // that keep evicting (the hot keys' entries among them): the two regimes
  // in the same shards at the same time.
  armor::manual_clock clock;
  constexpr std::size_t small_limit = 64;
  armor::cache<int, std::int64_t, armor::manual_clock> c(
      {.max_age = 3s, .stale_while_revalidate = 3s, .stale_if_error = 20s, .max_entries = small_limit, .shards = 4},
      clock);
  std::array<key_state, keys> state;
  std::atomic<std::uint64_t> wrong{0}, over{0}, answered{0}, failed{0};
  {
    worker_executor ex;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::uint32_t x = static_cast<std::uint32_t>(t) * 2654435761U + 7U;
        for (int i = 0; i < calls; ++i) {
          if (t % 2 == 0) {
            const int k = (i * 7 + t) % keys;
            auto r = call_hot_key(c, state[static_cast<std::size_t>(k)], k, ex, i);
            if (!r) {
              failed.fetch_add(1, std::memory_order_relaxed);
              continue;
            }
            if (**r % keys != k) wrong.fetch_add(1, std::memory_order_relaxed);
          } else {
            x = x * 1664525U + 1013904223U;
            const int k = 100 + static_cast<int>((x >> 12) % 4096);
            auto a = c.execute(k, [k] { return std::int64_t{k} * 3; });
            if (*a != std::int64_t{k} * 3) wrong.fetch_add(1, std::memory_order_relaxed);
          }
          answered.fetch_add(1, std::memory_order_relaxed);
          if (c.stats().entries > small_limit) over.fetch_add(1, std::memory_order_relaxed);
          if (i % 64 == 0) clock.advance(std::chrono::milliseconds{200 + 50 * t});
        }
      });
    }
    for (auto& th : pool) th.join();
  }  // the executor drains its refreshes
  CHECK(wrong == 0);
  CHECK(over == 0);
  for (auto& ks : state) CHECK(ks.most.load() == 1);
  CHECK(answered + failed == std::uint64_t{threads} * calls);
  const auto st = c.stats();
  CHECK(st.entries <= small_limit);
  CHECK(st.evictions > 0);
  CHECK(c.flights().stats().in_flight == 0);
}

namespace {
// A value that names its key and carries its serial twice: a torn or
// misplaced read shows as a wrong key or a != b.
struct keyed {
  int key;
  std::int64_t a;
  std::int64_t b;
};
}  // namespace

TEST_CASE("stress: cache readers against a writer on one small shard: every value read is its key's and whole",
          "[cache]") {
  // One shard of max_entries 8 and 24 keys: every insert evicts or reuses a
  // slot that readers may be copying from; erase and purge_expired empty
  // slots under them too.
  armor::manual_clock clock;
  armor::cache<int, keyed, armor::manual_clock> c({.max_age = 1s, .max_entries = 8, .shards = 1}, clock);
  constexpr int readers = 4;
  constexpr std::int64_t writes = 30000;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> wrong{0}, reads{0}, over{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < readers; ++t) {
    pool.emplace_back([&, t] {
      std::uint32_t x = static_cast<std::uint32_t>(t) * 7919U + 1U;
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 1664525U + 1013904223U;
        const int k = static_cast<int>((x >> 8) % 24);
        const auto l = c.lookup(k);
        if (l.value && (l.value->key != k || l.value->a != l.value->b)) wrong.fetch_add(1, std::memory_order_relaxed);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // The writer runs a fixed number of steps and then stops the readers:
  // nothing waits for a reader to make progress.
  for (std::int64_t i = 0; i < writes; ++i) {
    const int k = static_cast<int>(i % 24);
    c.insert(k, keyed{k, i, i});
    if (c.stats().entries > 8) over.fetch_add(1, std::memory_order_relaxed);
    if (i % 1000 == 0) {
      clock.advance(2s);
      (void)c.purge_expired();
    }
    if (i % 777 == 0) (void)c.erase(k);
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : pool) th.join();
  CHECK(wrong == 0);
  CHECK(over == 0);
  CHECK(c.stats().entries <= 8);
}

TEST_CASE("stress: cache refresh task copies run at once on two threads: the refresh runs once", "[cache]") {
  // An executor may copy a task and run the copies concurrently: exactly one
  // of them runs the operation, the other returns at once.
  armor::manual_clock clock;
  armor::cache<int, std::int64_t, armor::manual_clock> c(
      {.max_age = 10s, .stale_while_revalidate = 100s, .max_entries = 8, .shards = 1}, clock);
  struct holding_executor {
    std::vector<std::function<void()>> tasks;
    void post(std::function<void()> f) { tasks.push_back(std::move(f)); }
  };
  std::atomic<int> op_calls{0};
  auto op = [&op_calls] { return std::int64_t{op_calls.fetch_add(1, std::memory_order_relaxed) + 1}; };
  (void)c.execute(1, op);
  constexpr int rounds = 200;
  for (int round = 0; round < rounds; ++round) {
    clock.advance(11s);
    holding_executor ex;
    (void)c.execute(1, op, ex);
    REQUIRE(ex.tasks.size() == 1);
    std::function<void()> twin = ex.tasks.front();
    std::thread other([&] { twin(); });
    ex.tasks.front()();
    other.join();
  }
  CHECK(op_calls.load() == rounds + 1);
  CHECK(c.stats().refreshes == std::uint64_t{rounds});
  CHECK(c.flights().stats().in_flight == 0);
}
