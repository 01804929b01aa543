// What armor::coalescer allocates: a flight, its shared state and its map
// node (two allocations for a key whose copy does not allocate); a caller
// that joins a running flight, nothing.
#include <armor/coalesce.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <cstddef>
#include <latch>
#include <thread>

TEST_CASE("coalescer: a flight allocates its state and its map node; a caller that joins allocates nothing",
          "[alloc][coalesce]") {
  armor::coalescer<int, int> c;
  CHECK(c.execute(1, [] { return 1; }) == 1);  // the map's bucket array, once
  {
    armor_test::allocation_scope scope;
    CHECK(c.execute(1, [] { return 2; }) == 2);
    CHECK(scope.allocations() == 2);
  }
  std::latch entered{1};
  std::latch release{1};
  std::thread leader([&] {
    (void)c.execute(1, [&] {
      entered.count_down();
      release.wait();
      return 3;
    });
  });
  entered.wait();
  std::size_t joiner_allocations = 99;
  int joined_value = 0;
  std::thread joiner([&] {
    armor_test::allocation_scope scope;
    joined_value = c.execute(1, [] { return 4; });
    joiner_allocations = scope.allocations();
  });
  while (c.stats().joined < 1) std::this_thread::yield();
  release.count_down();
  leader.join();
  joiner.join();
  CHECK(joined_value == 3);
  CHECK(joiner_allocations == 0);
}
