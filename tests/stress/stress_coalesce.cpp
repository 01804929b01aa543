// Many threads on few keys through one armor::coalescer: never two
// executions of one key at once, every call accounted for (calls =
// executions + joined), every caller that did not give up got the value of
// an execution of its own key that was running while it waited, and
// callers that give up (timeout 0 or a short one) leave the others alone.
// Run under ThreadSanitizer.
#include <armor/coalesce.hpp>

#include "armor_catch.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 8;
constexpr int keys = 3;
constexpr int calls_per_thread = 3000;

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

struct key_state {
  std::atomic<int> inside{0};         // executions of this key running now
  std::atomic<int> most{0};           // the most ever seen at once
  std::atomic<std::int64_t> serial{0};  // executions so far
};

}  // namespace

TEST_CASE("stress: coalescing never runs one key twice at once, and accounts for every call", "[coalesce]") {
  armor::coalescer<int, std::int64_t> c({.shards = 2});
  std::array<key_state, keys> state;
  std::atomic<std::uint64_t> ran{0};
  std::atomic<std::uint64_t> values{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> gave_up{0};
  std::atomic<std::uint64_t> wrong{0};

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < calls_per_thread; ++i) {
        const int k = (i + t) % keys;
        key_state& ks = state[static_cast<std::size_t>(k)];
        const std::int64_t before = ks.serial.load(std::memory_order_acquire);
        auto op = [&]() -> std::int64_t {
          ran.fetch_add(1, std::memory_order_relaxed);
          const int now = ks.inside.fetch_add(1, std::memory_order_acq_rel) + 1;
          int m = ks.most.load(std::memory_order_relaxed);
          while (now > m && !ks.most.compare_exchange_weak(m, now, std::memory_order_relaxed)) {
          }
          const std::int64_t mine = ks.serial.fetch_add(1, std::memory_order_acq_rel) + 1;
          for (int spin = 0; spin < 50; ++spin) std::this_thread::yield();  // an upstream that takes a while
          ks.inside.fetch_sub(1, std::memory_order_acq_rel);
          if (mine % 97 == 0) throw boom{};
          return mine * keys + k;  // says which key and which execution
        };
        // Every 5th caller is impatient: it gives up at once if it joins.
        const auto timeout = i % 5 == 0 ? 0ns : std::chrono::nanoseconds::max();
        auto r = c.try_execute(k, op, {.timeout = timeout});
        if (r) {
          values.fetch_add(1, std::memory_order_relaxed);
          const std::int64_t v = *r;
          // The value is of this key, from an execution that started after
          // this caller read the serial number, or the one running then.
          if (v % keys != k || v / keys < before) wrong.fetch_add(1, std::memory_order_relaxed);
        } else if (r.code() == armor::errc::deadline_exceeded) {
          gave_up.fetch_add(1, std::memory_order_relaxed);
        } else if (r.code() == armor::errc::operation_failed && r.error().from_operation()) {
          errors.fetch_add(1, std::memory_order_relaxed);
        } else {
          wrong.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& th : pool) th.join();

  const auto st = c.stats();
  const std::uint64_t calls = std::uint64_t{threads} * calls_per_thread;
  for (const auto& ks : state) CHECK(ks.most.load() == 1);
  CHECK(wrong.load() == 0);
  CHECK(values + errors + gave_up == calls);
  CHECK(st.executions + st.joined == calls);
  CHECK(st.executions == ran.load());
  CHECK(st.abandoned == gave_up.load());
  CHECK(st.in_flight == 0);
  CHECK(st.cancelled == 0);
  for (int k = 0; k < keys; ++k) CHECK_FALSE(c.in_flight(k));
  // Coalescing happened: fewer executions than calls.
  CHECK(st.joined > 0);
  INFO("calls " << calls << ", executions " << st.executions << ", joined " << st.joined);
  CHECK(st.executions < calls);
}
