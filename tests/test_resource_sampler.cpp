// armor::resource_sampler: every reading from files in a temporary directory
// laid out like /sys/fs/cgroup and /proc (cgroup limits, "max", no cgroup at
// all, nested cgroups, malformed files), the CPU delta on a manual clock, the
// descriptor count against an injected limit, and one smoke test on the real
// machine that checks only that readings are fractions or unavailable.
#include <armor/resource_sampler.hpp>

#include "armor_catch.hpp"
#include "resource_tree.hpp"

#include <chrono>
#include <cstdint>
#include <string>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

using sampler = armor::resource_sampler<armor::manual_clock>;

sampler make(const armor_test::resource_tree& t, armor::manual_clock clock, std::uint64_t fd_limit = 100) {
  return sampler{{.cgroup_root = t.cgroup(), .proc_root = t.proc(), .fd_limit = fd_limit}, clock};
}

std::uint64_t page_size() { return static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)); }

// /proc/stat with the given totals on its "cpu" line (user, system, idle,
// iowait; the rest 0) and two cpuN lines.
std::string proc_stat(std::uint64_t user, std::uint64_t system, std::uint64_t idle, std::uint64_t iowait) {
  const std::string cpu = std::to_string(user) + " 0 " + std::to_string(system) + " " + std::to_string(idle) + " " +
                          std::to_string(iowait) + " 0 0 0 0 0\n";
  return "cpu  " + cpu + "cpu0 " + cpu + "cpu1 " + cpu + "intr 12345 1 2 3\nctxt 999\n";
}

bool fraction_or_unavailable(const std::optional<double>& f) { return !f || (*f >= 0.0 && *f <= 1.0); }

}  // namespace

TEST_CASE("a cgroup memory limit: the working set over memory.max", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/\n");
  t.write("cgroup/memory.max", "1073741824\n");
  t.write("cgroup/memory.current", "536870912\n");
  t.write("cgroup/memory.stat", "anon 268435456\nfile 268435456\nactive_file 1000\ninactive_file 134217728\n");
  t.write("proc/meminfo", "MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:   8000000 kB\n");
  t.write("proc/self/statm", "1000 250 100 10 0 200 0\n");
  armor::manual_clock clock;
  auto s = make(t, clock);
  CHECK(s.cgroup_directories() == std::vector<std::filesystem::path>{t.cgroup()});

  const auto r = s.sample();
  CHECK(r.memory_source == armor::resource_source::cgroup);
  CHECK(r.memory_used_bytes == 536870912u - 134217728u);  // page cache the kernel can drop is not counted
  CHECK(r.memory_limit_bytes == 1073741824u);
  REQUIRE(r.memory);
  CHECK(*r.memory == 0.375);
  CHECK(r.rss_bytes == 250 * page_size());

  SECTION("memory.stat missing: memory.current as it is") {
    t.remove("cgroup/memory.stat");
    CHECK(s.sample().memory == 0.5);
  }
  SECTION("a use above the limit reads 1") {
    t.write("cgroup/memory.current", "1100000000\n");
    t.remove("cgroup/memory.stat");
    const auto over = s.sample();
    CHECK(over.memory == 1.0);
    CHECK(over.memory_used_bytes == 1100000000u);
  }
  SECTION("the limit is read at every sample: a raised limit shows at once") {
    t.write("cgroup/memory.max", "2147483648\n");
    CHECK(s.sample().memory == 0.1875);
  }
}

TEST_CASE("memory.max \"max\": the host's use, MemTotal less MemAvailable over MemTotal", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/\n");
  t.write("cgroup/memory.max", "max\n");
  t.write("cgroup/memory.current", "536870912\n");
  t.write("proc/meminfo", "MemTotal:        1000000 kB\nMemFree:  100 kB\nMemAvailable:     250000 kB\n");
  armor::manual_clock clock;
  auto s = make(t, clock);
  const auto r = s.sample();
  CHECK(r.memory_source == armor::resource_source::host);
  CHECK(r.memory == 0.75);
  CHECK(r.memory_used_bytes == 750000u * 1024u);
  CHECK(r.memory_limit_bytes == 1000000u * 1024u);
}

TEST_CASE("cpu.max \"max 100000\": the host's busy share from /proc/stat", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/\n");
  t.write("cgroup/cpu.max", "max 100000\n");
  t.write("cgroup/cpu.stat", "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n");
  t.write("proc/stat", proc_stat(1000, 500, 8000, 500));
  armor::manual_clock clock;
  auto s = make(t, clock);

  // 400 ticks pass: 300 busy (200 user, 100 system), 100 idle (80 + 20 iowait).
  t.write("proc/stat", proc_stat(1200, 600, 8080, 520));
  clock.advance(1s);
  const auto r = s.sample();
  CHECK(r.cpu_source == armor::resource_source::host);
  CHECK(r.cpu == 0.75);
  CHECK(r.cpu_limit == 2.0);  // two cpuN lines
  CHECK(r.cpu_used == 1.5);

  // No tick between two samples: nothing to measure.
  const auto still = s.sample();
  CHECK_FALSE(still.cpu);
  CHECK(still.cpu_source == armor::resource_source::unavailable);
}

TEST_CASE("CPU against a cgroup quota of 50000/100000 (half a CPU)", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/\n");
  t.write("cgroup/cpu.max", "50000 100000\n");
  t.write("cgroup/cpu.stat", "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n");
  t.write("proc/stat", proc_stat(1000, 500, 8000, 500));
  armor::manual_clock clock;
  auto s = make(t, clock);

  SECTION("the first sample measures from construction; no time passed: unavailable") {
    const auto r = s.sample();
    CHECK_FALSE(r.cpu);
    CHECK_FALSE(r.cpu_used);
    CHECK(r.cpu_source == armor::resource_source::unavailable);  // not the host: a quota applies
  }
  SECTION("a quarter of a CPU used for a second is half the quota") {
    clock.advance(1s);
    t.write("cgroup/cpu.stat", "usage_usec 1250000\nuser_usec 700000\nsystem_usec 550000\n");
    const auto r = s.sample();
    CHECK(r.cpu_source == armor::resource_source::cgroup);
    CHECK(r.cpu == 0.5);
    CHECK(r.cpu_used == 0.25);
    CHECK(r.cpu_limit == 0.5);

    // Each sample measures from the previous one: 0.45 CPU for 2 s is 90 %.
    clock.advance(2s);
    t.write("cgroup/cpu.stat", "usage_usec 2150000\n");
    CHECK(s.sample().cpu == 0.9);

    // Throttling lets a cgroup run a little over its quota: it reads 1.
    clock.advance(1s);
    t.write("cgroup/cpu.stat", "usage_usec 2700000\n");
    const auto over = s.sample();
    CHECK(over.cpu == 1.0);
    CHECK(over.cpu_used == 0.55);
  }
  SECTION("a counter that goes backwards (the cgroup was recreated) gives no reading, then a new baseline") {
    clock.advance(1s);
    t.write("cgroup/cpu.stat", "usage_usec 10\n");
    CHECK_FALSE(s.sample().cpu);
    clock.advance(1s);
    t.write("cgroup/cpu.stat", "usage_usec 100010\n");
    CHECK(s.sample().cpu == 0.2);
  }
}

TEST_CASE("nested cgroups: the level nearest its limit gives the reading", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  // The root has no limits (as the host's root cgroup).
  t.write("cgroup/cpu.stat", "usage_usec 99999999\n");
  // The pod: 1 GB for all its containers, nearly used up; one CPU.
  t.write("cgroup/kubepods/pod1/memory.max", "1000000000\n");
  t.write("cgroup/kubepods/pod1/memory.current", "900000000\n");
  t.write("cgroup/kubepods/pod1/cpu.max", "100000 100000\n");
  t.write("cgroup/kubepods/pod1/cpu.stat", "usage_usec 5000000\n");
  // The container: a higher limit of its own, less used; no CPU quota.
  t.write("cgroup/kubepods/pod1/ctr/memory.max", "2000000000\n");
  t.write("cgroup/kubepods/pod1/ctr/memory.current", "500000000\n");
  t.write("cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");
  t.write("cgroup/kubepods/pod1/ctr/cpu.stat", "usage_usec 1000000\n");
  armor::manual_clock clock;
  auto s = make(t, clock);
  CHECK(s.cgroup_directories() ==
        std::vector<std::filesystem::path>{t.cgroup() / "kubepods/pod1/ctr", t.cgroup() / "kubepods/pod1",
                                           t.cgroup() / "kubepods", t.cgroup()});

  clock.advance(1s);
  t.write("cgroup/kubepods/pod1/cpu.stat", "usage_usec 5600000\n");
  const auto r = s.sample();
  CHECK(r.memory_source == armor::resource_source::cgroup);
  CHECK(r.memory == 0.9);
  CHECK(r.memory_limit_bytes == 1000000000u);
  CHECK(r.cpu_source == armor::resource_source::cgroup);
  CHECK(r.cpu == 0.6);
  CHECK(r.cpu_limit == 1.0);

  SECTION("the container nearer its own limit: the container") {
    t.write("cgroup/kubepods/pod1/ctr/memory.current", "1900000000\n");
    t.write("cgroup/kubepods/pod1/memory.current", "100000000\n");  // (a test's liberty)
    CHECK(s.sample().memory == 0.95);
  }
  SECTION("the cgroup path missing under the root (no cgroup namespace): the root alone") {
    t.write("proc/self/cgroup", "12:memory:/x\n0::/elsewhere\n");
    t.write("cgroup/memory.max", "4000\n");
    t.write("cgroup/memory.current", "1000\n");
    auto root_only = make(t, clock);
    CHECK(root_only.cgroup_directories() == std::vector<std::filesystem::path>{t.cgroup()});
    CHECK(root_only.sample().memory == 0.25);
  }
}

TEST_CASE("no cgroup at all: the host's memory and CPU", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.remove("cgroup");
  t.write("proc/meminfo", "MemTotal:        2000000 kB\nMemAvailable:    1500000 kB\n");
  t.write("proc/stat", proc_stat(100, 100, 100, 100));
  armor::manual_clock clock;
  auto s = make(t, clock);
  CHECK(s.cgroup_directories().empty());

  t.write("proc/stat", proc_stat(150, 150, 200, 100));
  clock.advance(1s);
  const auto r = s.sample();
  CHECK(r.memory_source == armor::resource_source::host);
  CHECK(r.memory == 0.25);
  CHECK(r.cpu_source == armor::resource_source::host);
  CHECK(r.cpu == 0.5);

  SECTION("and no /proc files either: everything unavailable, nothing thrown") {
    t.remove("proc");
    auto bare = make(t, clock, 0);
    clock.advance(1s);
    const auto none = bare.sample();
    CHECK_FALSE(none.memory);
    CHECK_FALSE(none.cpu);
    CHECK_FALSE(none.file_descriptors);
    CHECK_FALSE(none.open_fds);
    CHECK_FALSE(none.rss_bytes);
    CHECK_FALSE(none.memory_used_bytes);
    CHECK(none.memory_source == armor::resource_source::unavailable);
    CHECK(none.cpu_source == armor::resource_source::unavailable);
  }
}

TEST_CASE("malformed files give no reading from them, never a wrong one", "[resource_sampler]") {
  armor_test::resource_tree t;
  t.write("proc/self/cgroup", "0::/\n");
  t.write("cgroup/cpu.stat", "usage_usec 1000\n");
  t.write("proc/stat", proc_stat(100, 100, 100, 100));
  armor::manual_clock clock;

  SECTION("memory: a malformed memory.max or memory.current is skipped, and the host read instead") {
    const char* cases[][2] = {
        {"lots\n", "1000\n"}, {"1000 2000\n", "1000\n"}, {"-5\n", "1000\n"},   {"", "1000\n"},
        {"1000\n", "12x\n"},  {"1000\n", ""},            {"1000\n", "max\n"}, {"99999999999999999999999\n", "1\n"},
    };
    t.write("proc/meminfo", "MemTotal:        1000 kB\nMemAvailable:     600 kB\n");
    for (const auto& c : cases) {
      t.write("cgroup/memory.max", c[0]);
      t.write("cgroup/memory.current", c[1]);
      auto s = make(t, clock);
      const auto r = s.sample();
      INFO("memory.max '" << c[0] << "', memory.current '" << c[1] << "'");
      CHECK(r.memory_source == armor::resource_source::host);
      CHECK(r.memory == 0.4);
    }
  }
  SECTION("memory: a malformed meminfo too gives no reading") {
    t.write("cgroup/memory.max", "lots\n");
    const char* meminfos[] = {
        "MemTotal: 1000 kB\n",                        // no MemAvailable
        "MemTotal: 1000 MB\nMemAvailable: 10 kB\n",   // a unit procfs never writes
        "MemTotal: 0 kB\nMemAvailable: 0 kB\n",       // nothing to divide by
        "MemTotal: x kB\nMemAvailable: 10 kB\n",
        "",
    };
    for (const char* m : meminfos) {
      t.write("proc/meminfo", m);
      auto s = make(t, clock);
      INFO("meminfo '" << m << "'");
      CHECK_FALSE(s.sample().memory);
    }
  }
  SECTION("CPU: a malformed cpu.max counts as no quota; a malformed cpu.stat as no reading") {
    t.write("cgroup/cpu.max", "50000\n");  // no period
    auto s = make(t, clock);
    t.write("proc/stat", proc_stat(200, 100, 200, 100));
    clock.advance(1s);
    CHECK(s.sample().cpu_source == armor::resource_source::host);

    t.write("cgroup/cpu.max", "50000 100000\n");
    t.write("cgroup/cpu.stat", "usage_usec many\n");
    auto q = make(t, clock);
    clock.advance(1s);
    const auto r = q.sample();
    CHECK_FALSE(r.cpu);
    CHECK(r.cpu_source == armor::resource_source::unavailable);
  }
  SECTION("CPU: a malformed /proc/stat gives no reading") {
    t.write("proc/stat", "cpu  a b c d\n");
    auto s = make(t, clock);
    clock.advance(1s);
    CHECK_FALSE(s.sample().cpu);
  }
  SECTION("RSS: a malformed statm gives none") {
    t.write("proc/self/statm", "1000 lots 3\n");
    auto s = make(t, clock);
    CHECK_FALSE(s.sample().rss_bytes);
  }
  SECTION("lines longer than the read buffer are passed over") {
    std::string meminfo = "Filler: " + std::string(10000, '7') + " kB\n";
    for (int i = 0; i < 300; ++i) meminfo += "Other" + std::to_string(i) + ":  " + std::to_string(i) + " kB\n";
    meminfo += "MemTotal:        1000 kB\nMemAvailable:     100 kB\n";
    t.write("proc/meminfo", meminfo);
    auto s = make(t, clock);
    CHECK(s.sample().memory == 0.9);
  }
}

TEST_CASE("file descriptors: entries of <proc>/self/fd over the limit", "[resource_sampler]") {
  armor_test::resource_tree t;
  armor::manual_clock clock;
  t.open_fds(5);
  auto s = make(t, clock, 10);
  auto r = s.sample();
  CHECK(r.open_fds == 5u);
  CHECK(r.fd_limit == 10u);
  CHECK(r.file_descriptors == 0.5);

  t.open_fds(12);  // over a limit lowered after they were opened
  r = s.sample();
  CHECK(r.open_fds == 12u);
  CHECK(r.file_descriptors == 1.0);

  SECTION("fd_limit 0: the soft RLIMIT_NOFILE") {
    struct rlimit rl {};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
    auto by_rlimit = make(t, clock, 0);
    const auto limited = by_rlimit.sample();
    if (rl.rlim_cur == RLIM_INFINITY) {
      CHECK_FALSE(limited.fd_limit);
      CHECK_FALSE(limited.file_descriptors);
    } else {
      CHECK(limited.fd_limit == static_cast<std::uint64_t>(rl.rlim_cur));
    }
  }
}

TEST_CASE("bad options are refused at construction, naming the option", "[resource_sampler]") {
  const auto message = [](armor::resource_sampler_options o) -> std::string {
    try {
      armor::resource_sampler<> s{std::move(o)};
      (void)s.options();
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "accepted";
  };
  CHECK(message({.cgroup_root = ""}).find("cgroup_root") != std::string::npos);
  CHECK(message({.proc_root = ""}).find("proc_root") != std::string::npos);
  CHECK(message({.cgroup_root = "/nonexistent/armor", .proc_root = "/nonexistent/armor"}) == "accepted");
}

TEST_CASE("on this machine: every reading is a fraction or unavailable", "[resource_sampler]") {
  armor::resource_sampler<> s;
  for (int i = 0; i < 3; ++i) {
    const auto r = s.sample();
    CHECK(fraction_or_unavailable(r.memory));
    CHECK(fraction_or_unavailable(r.cpu));
    CHECK(fraction_or_unavailable(r.file_descriptors));
  }
  // The descriptor the sampler opens to list /proc/self/fd is not counted.
  const auto before = s.sample().open_fds;
  if (before) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(s.sample().open_fds == *before + 1);
    ::close(fd);
  }
}
