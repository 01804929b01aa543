// A fallback that returns a value for an operation that returns void.
// expect: armor::fallback: the operation returns void, so the fallback function must return void too
#include <armor/fallback.hpp>
#include <armor/pipeline.hpp>

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto p = armor::pipeline{armor::fallback{[] {}}};
#else
  auto p = armor::pipeline{armor::fallback{[] { return 0; }}};
#endif
  p.execute([] {});
}
