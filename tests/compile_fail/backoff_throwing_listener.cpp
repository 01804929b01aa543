// A backoff listener that may throw.
// expect: armor::backoff: Listener must be no_listener or callable as listener(const armor::backoff_event&) noexcept
#include <armor/backoff.hpp>
#include <armor/pipeline.hpp>

int main() {
  int events = 0;
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto on_event = [&](const armor::backoff_event&) noexcept { ++events; };
#else
  auto on_event = [&](const armor::backoff_event&) { ++events; };
#endif
  auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}, armor::thread_rng{}, on_event}};
  return p.execute([] { return 0; }) + events;
}
