// What armor::cache allocates on a hit: nothing. lookup() and execute()'s
// fresh and stale answers copy a shared_ptr (an atomic increment) and take
// no mutex; a miss allocates (the coalescer's flight, the value, the key).
#include <armor/cache.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Keeps the posted refresh until the test runs it.
struct holding_executor {
  std::vector<std::function<void()>> tasks;
  void post(std::function<void()> f) { tasks.push_back(std::move(f)); }
};

}  // namespace

TEST_CASE("cache: a hit allocates nothing (lookup, fresh answer, stale answer while a refresh runs)",
          "[alloc][cache]") {
  armor::manual_clock clock;
  armor::cache<std::string, std::string, armor::manual_clock> c(
      {.max_age = 10s, .stale_while_revalidate = 10s, .shards = 4}, clock);
  const std::string key = "a key long enough to be on the heap if copied";
  int calls = 0;
  auto op = [&] {
    ++calls;
    return std::string(100, 'x');
  };
  CHECK(c.execute(key, op).origin == armor::cache_origin::live);
  {
    armor_test::allocation_scope scope;
    int fresh = 0;
    for (int i = 0; i < 100; ++i) {
      fresh += c.lookup(key).state == armor::cache_state::fresh ? 1 : 0;
      fresh += c.execute(key, op).origin == armor::cache_origin::fresh ? 1 : 0;
    }
    const std::size_t allocations = scope.allocations();
    CHECK(fresh == 200);
    CHECK(allocations == 0);
  }
  clock.advance(11s);
  holding_executor ex;
  ex.tasks.reserve(4);
  CHECK(c.execute(key, op, ex).origin == armor::cache_origin::stale);  // posts the one refresh (allocates)
  REQUIRE(ex.tasks.size() == 1);
  {
    armor_test::allocation_scope scope;
    int stale = 0;
    for (int i = 0; i < 100; ++i) stale += c.execute(key, op, ex).origin == armor::cache_origin::stale ? 1 : 0;
    const std::size_t allocations = scope.allocations();
    CHECK(stale == 100);
    CHECK(allocations == 0);
  }
  CHECK(ex.tasks.size() == 1);
  CHECK(calls == 1);
  ex.tasks.front()();
  CHECK(calls == 2);
  CHECK(c.execute(key, op, ex).origin == armor::cache_origin::fresh);
}
