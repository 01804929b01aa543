// The one policy shape for the SQLite backend's public enumeration (see
// tests/fmt/shape_checks.hpp). Needs fmt; without it there is nothing to check.
#include <armor/storage/sqlite.hpp>

#include "armor_catch.hpp"

#if __has_include(<fmt/format.h>)
#include "fmt/shape_checks.hpp"

TEST_CASE("shape: the SQLite backend's enumerations have names and format with fmt", "[shape]") {
  armor_test::check_enum<armor::sqlite_mode>("sqlite_mode");
}
#endif
