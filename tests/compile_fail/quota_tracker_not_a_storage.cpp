// A quota tracker given a file name where it wants a storage backend.
// expect: armor::quota_tracker: Storage must meet armor::quota_storage
#include <armor/clock.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/memory.hpp>

#include <string>

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}, armor::system_clock{},
                             armor::memory_quota_storage{}};
#else
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}, armor::system_clock{},
                             std::string("quota.db")};
#endif
  return quota.try_consume() ? 0 : 1;
}
