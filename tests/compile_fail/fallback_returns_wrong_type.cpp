// A fallback whose value cannot stand in for the operation's.
// expect: armor::fallback: the fallback function must return the operation's type (or one convertible to it)
#include <armor/fallback.hpp>
#include <armor/pipeline.hpp>

#include <string>

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto p = armor::pipeline{armor::fallback{[] { return 0; }}};
#else
  auto p = armor::pipeline{armor::fallback{[] { return std::string("cached"); }}};
#endif
  return p.execute([] { return 1; });
}
