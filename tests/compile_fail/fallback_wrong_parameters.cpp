// A fallback function that takes something armor cannot give it.
// expect: armor::fallback: the fallback function must be callable as
// expect: f(const armor::failure&, const armor::context&), f(const armor::failure&) or f()
#include <armor/fallback.hpp>
#include <armor/pipeline.hpp>

#include <system_error>

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto p = armor::pipeline{armor::fallback{[](const armor::failure& why) { return why.code ? 2 : 3; }}};
#else
  auto p = armor::pipeline{armor::fallback{[](std::error_code code) { return code ? 2 : 3; }}};
#endif
  return p.execute([] { return 1; });
}
