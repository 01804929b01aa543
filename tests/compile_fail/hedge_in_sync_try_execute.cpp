// armor::hedge in a pipeline driven by the sync driver (try_execute).
// expect: armor::hedge: hedging runs attempts side by side, which the sync driver cannot do
#include <armor/deadline.hpp>
#include <armor/hedge.hpp>
#include <armor/pipeline.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  const auto p = armor::pipeline{armor::deadline{2s}};
#else
  const auto p = armor::pipeline{armor::deadline{2s}, armor::hedge{{.max_attempts = 2, .delay = 50ms}}};
#endif
  return p.try_execute([] { return 0; }).value_or(1);
}
