// The example at the top of armor/storage/sqlite.hpp, compiled (not run: it
// names a database under /var/lib; tests/sqlite/test_sqlite_quota.cpp runs
// the same calls on temporary files).
//
// The example is copied verbatim under a `// header example: <armor/...>`
// line; tests/shape/check_examples.py (CTest armor_header_examples_check)
// fails when the header's example and its copy here differ. Change both
// together.
#include <armor/clock.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/sqlite.hpp>

#include "armor_catch.hpp"

#include <type_traits>

namespace header_examples {

// ---------------------------------------------------------------------------
// header example: <armor/storage/sqlite.hpp>
namespace sqlite_ex {
bool example() {
  armor::quota_tracker gemini{
      {.windows = {armor::quota_window::per_day(50)}},
      armor::system_clock{},
      armor::sqlite_quota_storage{{.path = "/var/lib/app/quota.db", .tracker = "gemini",
                                   .create_if_missing = true}},
  };
  static_assert(std::is_same_v<decltype(gemini), armor::quota_tracker<armor::system_clock, armor::sqlite_quota_storage>>);
  return static_cast<bool>(gemini.try_consume());
}
}  // namespace sqlite_ex

}  // namespace header_examples

TEST_CASE("header example: storage/sqlite.hpp compiles") {
  bool (*example)() = &header_examples::sqlite_ex::example;
  CHECK(example != nullptr);
}
