// An operation that returns armor::failure: try_execute could not tell the
// operation's value from armor's own refusal.
// expect: armor: an operation must not return armor::failure
#include <armor/pipeline.hpp>

int main() {
  auto p = armor::pipeline{};
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto r = p.try_execute([] { return 0; });
#else
  auto r = p.try_execute([] { return armor::failure{}; });
#endif
  return r.has_value() ? 0 : 1;
}
