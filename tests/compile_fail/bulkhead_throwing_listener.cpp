// A bulkhead listener that may throw.
// expect: armor::bulkhead: Listener must be no_listener or callable as listener(const armor::bulkhead_event&) noexcept
#include <armor/bulkhead.hpp>

int main() {
  int events = 0;
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto on_event = [&](const armor::bulkhead_event&) noexcept { ++events; };
#else
  auto on_event = [&](const armor::bulkhead_event&) { ++events; };
#endif
  armor::bulkhead limit{armor::bulkhead_options{}, on_event};
  return limit.try_acquire() ? 0 : 1;
}
