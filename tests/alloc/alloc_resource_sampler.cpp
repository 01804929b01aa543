// The resource sampler allocates nothing per sample, once constructed: on a
// temporary tree with every file it reads (nested cgroups with limits, the
// host's files, descriptors to count), and on this machine's real /proc and
// /sys/fs/cgroup.
#include <armor/resource_sampler.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"
#include "resource_tree.hpp"

#include <chrono>

using namespace std::chrono_literals;

TEST_CASE("resource_sampler::sample allocates nothing, on a tree with every file") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/pod/ctr\n");
  t.write("cgroup/pod/memory.max", "1000000000\n");
  t.write("cgroup/pod/memory.current", "900000000\n");
  t.write("cgroup/pod/memory.stat", "anon 1\ninactive_file 1000\n");
  t.write("cgroup/pod/cpu.max", "100000 100000\n");
  t.write("cgroup/pod/cpu.stat", "usage_usec 5000000\n");
  t.write("cgroup/pod/ctr/memory.max", "max\n");
  t.write("cgroup/pod/ctr/cpu.max", "max 100000\n");
  t.write("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 600 kB\n");
  t.write("proc/stat", "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n");
  t.write("proc/self/statm", "100 20 3 4 0 5 0\n");
  t.open_fds(40);
  armor::manual_clock clock;
  armor::resource_sampler<armor::manual_clock> s{{.cgroup_root = t.cgroup(), .proc_root = t.proc(), .fd_limit = 100}, clock};
  clock.advance(1s);
  (void)s.sample();  // warm-up

  int readings = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 200; ++i) {
    clock.advance(1s);
    const auto r = s.sample();
    readings += r.memory.has_value() + r.cpu.has_value() + r.file_descriptors.has_value() + r.rss_bytes.has_value();
  }
  CHECK(scope.allocations() == 0);
  CHECK(readings == 200 * 4);  // every reading there, each time
}

TEST_CASE("resource_sampler::sample allocates nothing, on this machine") {
  armor::resource_sampler<> s;
  (void)s.sample();  // warm-up
  armor_test::allocation_scope scope;
  for (int i = 0; i < 200; ++i) (void)s.sample();
  CHECK(scope.allocations() == 0);
}
