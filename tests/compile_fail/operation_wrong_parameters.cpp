// An operation the driver cannot call: it takes neither nothing nor the context.
// expect: armor: the operation must be callable as f(const armor::context&) or as f()
#include <armor/pipeline.hpp>

int main() {
  auto p = armor::pipeline{};
#ifdef ARMOR_COMPILE_FAIL_FIXED
  return p.execute([](const armor::context& ctx) { return ctx.attempt() > 1 ? 1 : 0; });
#else
  return p.execute([](int attempt) { return attempt > 1 ? 1 : 0; });
#endif
}
