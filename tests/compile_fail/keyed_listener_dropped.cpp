// armor::keyed over a policy with a listener whose per-key instances take
// none (bulkheads and token buckets are stored without one): the listener
// would never be called, so keyed refuses it rather than drop it silently.
// expect: armor::keyed<P>: P has a listener, but the instance stored per key
#include <armor/bulkhead.hpp>
#include <armor/keyed.hpp>

struct refusal_log {
  void operator()(const armor::bulkhead_event&) const noexcept {}
};

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::keyed<armor::bulkhead<>> per_key{{.max_concurrent = 1}, {.max_keys = 4}};
#else
  armor::keyed<armor::bulkhead<refusal_log>> per_key{{.max_concurrent = 1}, {.max_keys = 4}};
#endif
  return per_key.size() == 0 ? 0 : 1;
}
