// A breaker read through a manual_clock, shared with a pipeline that keeps
// the default steady_clock.
// expect: armor::pipeline: a policy's clock_type differs from the pipeline's clock
#include <armor/circuit_breaker.hpp>
#include <armor/pipeline.hpp>

#include <functional>

int main() {
  armor::manual_clock clock;
  armor::circuit_breaker breaker{armor::circuit_breaker_options{}, clock};  // circuit_breaker<manual_clock>
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto p = armor::pipeline{clock, std::ref(breaker)};
#else
  auto p = armor::pipeline{std::ref(breaker)};
#endif
  return p.execute([] { return 0; });
}
