// A pipeline on a manual_clock holding (by value) a token bucket that reads
// the default steady_clock.
// expect: armor::pipeline: a policy's clock_type differs from the pipeline's clock
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
  armor::manual_clock clock;
  const armor::token_bucket_options options{.rate = {10, 1s}, .burst = 5};
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto p = armor::pipeline{clock, armor::token_bucket{options, clock}};
#else
  auto p = armor::pipeline{clock, armor::token_bucket{options}};
#endif
  return p.execute([] { return 0; });
}
