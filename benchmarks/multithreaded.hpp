// Makes every benchmark process multi-threaded before the first benchmark
// runs, by starting and joining one thread during static initialisation.
//
// Why: glibc (2.34 and later) skips the atomic instructions in
// pthread_mutex_lock/unlock while a process has never started a second
// thread. A run filtered to single-thread cases would then measure the mutex
// baselines at a fraction of what they cost in a service, where other threads
// always exist (seen here: a std::mutex bucket at 5.0 ns instead of 13.8 ns).
// armor's atomics cost the same either way, so without this the comparison
// would depend on the benchmark filter.
#pragma once

#include <thread>

namespace armor_bench {

inline const bool process_is_multithreaded = [] {
  std::thread([] {}).join();
  return true;
}();

}  // namespace armor_bench
