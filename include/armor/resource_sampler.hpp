// armor/resource_sampler.hpp: armor::resource_sampler, which reads how much of
// its memory, CPU and file descriptors a Linux process uses, from cgroup v2
// files (the container's or systemd unit's limits) or the host's /proc, for
// a load shedder or a log line. Linux only; not on any call path: run
// sample() from a timer or thread of your own, about once a second.
//
//     armor::resource_sampler<> sampler;   // reads /sys/fs/cgroup and /proc
//     // every second, from a timer or thread of yours:
//     armor::resource_readings r = sampler.sample();
//     if (r.memory) report("memory", *r.memory);   // fractions in [0, 1]
//     if (r.cpu) report("cpu", *r.cpu);            // since the previous sample
//     if (r.file_descriptors) report("fds", *r.file_descriptors);
//
// Each fraction is std::nullopt when it cannot be read (no such file, a
// malformed one, no limit to measure against). Beside the fractions: bytes
// used and the limit, the process's RSS, open descriptors and their limit,
// CPUs used and the quota. sample() allocates nothing and never throws; it
// is not to be called from two threads at once. Which files, which limit
// wins, and why: docs/resource_sampler.md.
#pragma once

#if !defined(__linux__)
#error "armor/resource_sampler.hpp reads Linux's /proc and cgroup v2 files"
#endif

#include <armor/clock.hpp>
#include <armor/detail/resource_files.hpp>
#include <armor/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace armor {

/// The options of armor::resource_sampler. An aggregate:
/// `{.cgroup_root = "/sys/fs/cgroup", .proc_root = "/proc"}`.
struct resource_sampler_options {
  /// Where the cgroup v2 hierarchy is mounted. The sampler finds its own
  /// cgroup under it from `<proc_root>/self/cgroup`. Not empty.
  std::filesystem::path cgroup_root = "/sys/fs/cgroup";
  /// Where procfs is mounted. Not empty.
  std::filesystem::path proc_root = "/proc";
  /// The most file descriptors the process may hold. 0 (the default): the
  /// soft RLIMIT_NOFILE, read with getrlimit at each sample.
  std::uint64_t fd_limit = 0;
};

/// Where a reading came from.
enum class resource_source : std::uint8_t {
  unavailable,  ///< nothing could be read
  cgroup,       ///< a cgroup v2 limit (the process's cgroup or an ancestor)
  host,         ///< the host's figures: no cgroup limit applies
};

/// The enumerator's name: "unavailable", "cgroup", "host".
[[nodiscard]] constexpr std::string_view to_string(resource_source s) noexcept {
  switch (s) {
    case resource_source::unavailable: return "unavailable";
    case resource_source::cgroup: return "cgroup";
    case resource_source::host: return "host";
  }
  return "unknown";
}

/// One sample. The fractions are in [0, 1] (a use above its limit, which the
/// kernel allows briefly, reads 1) or std::nullopt when unavailable; the raw
/// values are those the fractions were computed from.
struct resource_readings {
  /// Memory in use over the limit that applies (see memory_source).
  std::optional<double> memory;
  /// CPU time used since the previous sample over the CPU time available.
  std::optional<double> cpu;
  /// Open file descriptors over the limit.
  std::optional<double> file_descriptors;

  resource_source memory_source = resource_source::unavailable;
  /// cgroup: the working set (memory.current less inactive_file); host:
  /// MemTotal less MemAvailable. Bytes.
  std::optional<std::uint64_t> memory_used_bytes;
  /// cgroup: memory.max; host: MemTotal. Bytes.
  std::optional<std::uint64_t> memory_limit_bytes;
  /// The process's resident set, in bytes (from statm).
  std::optional<std::uint64_t> rss_bytes;

  resource_source cpu_source = resource_source::unavailable;
  /// CPUs busy on average since the previous sample (1.5 = one and a half
  /// CPUs' time): the cgroup's use, or the whole host's.
  std::optional<double> cpu_used;
  /// CPUs available: the cgroup's quota over its period, or the host's CPUs.
  std::optional<double> cpu_limit;

  std::optional<std::uint64_t> open_fds;
  /// The limit open_fds is measured against (none when RLIMIT_NOFILE is unlimited).
  std::optional<std::uint64_t> fd_limit;
};

namespace detail {

[[noreturn]] inline void sampler_refuse(const std::string& what) {
  invalid_config("armor::resource_sampler: " + what);
}

/// One directory of the cgroup path, from the process's own cgroup up to the
/// root: its files' paths, built once, and its last CPU reading.
struct cgroup_level {
  std::filesystem::path memory_current;
  std::filesystem::path memory_max;
  std::filesystem::path memory_stat;
  std::filesystem::path cpu_max;
  std::filesystem::path cpu_stat;
  std::optional<std::uint64_t> last_usage_us;
  std::int64_t last_ns = 0;
};

[[nodiscard]] constexpr double clamp_fraction(double f) noexcept {
  return f < 0.0 ? 0.0 : f > 1.0 ? 1.0 : f;
}

}  // namespace detail

/// Reads the process's resource use, from cgroup v2 when a limit applies and
/// from the host otherwise. Construction finds the cgroup and builds every
/// path (it allocates, and throws armor::error(invalid_argument) naming a
/// bad option); sample() then allocates nothing and never throws. sample()
/// keeps the previous CPU reading: one thread calls it at a time.
template <clock Clock = steady_clock>
class resource_sampler {
 public:
  explicit resource_sampler(resource_sampler_options options = {}, Clock clock = Clock{})
      : options_(std::move(options)), clock_(std::move(clock)) {
    if (options_.cgroup_root.empty()) detail::sampler_refuse("cgroup_root must not be empty");
    if (options_.proc_root.empty()) detail::sampler_refuse("proc_root must not be empty");
    const std::filesystem::path self = options_.proc_root / "self";
    proc_stat_ = options_.proc_root / "stat";
    meminfo_ = options_.proc_root / "meminfo";
    statm_ = self / "statm";
    fd_dir_ = self / "fd";
    const long page = ::sysconf(_SC_PAGESIZE);
    page_size_ = page > 0 ? static_cast<std::uint64_t>(page) : 0;
    find_cgroup(self / "cgroup");
    // The baselines the first sample's CPU reading is measured from.
    const std::int64_t now = now_ns();
    for (auto& level : levels_) {
      level.last_usage_us = detail::read_keyed_value(level.cpu_stat.c_str(), "usage_usec");
      level.last_ns = now;
    }
    last_host_cpu_ = detail::read_proc_stat(proc_stat_.c_str());
  }

  /// Reads every resource once. Memory and descriptors are read as they are
  /// now; CPU is the average since the previous sample (the first: since
  /// construction), std::nullopt when no time has passed.
  [[nodiscard]] resource_readings sample() noexcept {
    resource_readings r;
    sample_memory(r);
    sample_cpu(r);
    sample_fds(r);
    if (const auto pages = detail::read_statm_resident(statm_.c_str()); pages && page_size_ != 0) {
      r.rss_bytes = *pages * page_size_;
    }
    return r;
  }

  /// The options it was built with.
  [[nodiscard]] const resource_sampler_options& options() const noexcept { return options_; }

  /// The cgroup directories it reads, the process's own first (empty when
  /// none was found). For logs and tests.
  [[nodiscard]] std::vector<std::filesystem::path> cgroup_directories() const {
    std::vector<std::filesystem::path> out;
    for (const auto& level : levels_) out.push_back(level.cpu_stat.parent_path());
    return out;
  }

 private:
  [[nodiscard]] std::int64_t now_ns() const noexcept {
    return to_timestamp(clock_.now()).time_since_epoch().count();
  }

  // The process's cgroup is <cgroup_root>/<path>, its path from the "0::"
  // line of /proc/self/cgroup ("/" inside a container with its own cgroup
  // namespace). When that directory is missing (no cgroup namespace, the
  // container sees only its own cgroup at the root), the root alone is read.
  void find_cgroup(const std::filesystem::path& self_cgroup) {
    std::string relative;
    bool found = false;
    (void)detail::for_each_line(self_cgroup.c_str(), [&](std::string_view line) {
      if (line.substr(0, 3) != "0::") return true;
      relative.assign(line.substr(3));
      found = true;
      return false;
    });
    std::error_code ec;
    if (!std::filesystem::is_directory(options_.cgroup_root, ec)) return;
    std::vector<std::filesystem::path> dirs{options_.cgroup_root};
    if (found) {
      std::filesystem::path dir = options_.cgroup_root;
      std::vector<std::filesystem::path> chain;
      for (const auto& part : std::filesystem::path{relative}.relative_path()) {
        if (part.empty() || part == "." || part == "..") continue;
        dir /= part;
        chain.push_back(dir);
      }
      if (!chain.empty() && std::filesystem::is_directory(chain.back(), ec)) {
        dirs.insert(dirs.end(), chain.begin(), chain.end());
      }
    }
    std::reverse(dirs.begin(), dirs.end());
    for (const auto& dir : dirs) {
      detail::cgroup_level level;
      level.memory_current = dir / "memory.current";
      level.memory_max = dir / "memory.max";
      level.memory_stat = dir / "memory.stat";
      level.cpu_max = dir / "cpu.max";
      level.cpu_stat = dir / "cpu.stat";
      levels_.push_back(std::move(level));
    }
  }

  // Every cgroup level with a memory.max that is a number limits the
  // process; the one nearest its limit is the reading. With none, the host.
  void sample_memory(resource_readings& r) const noexcept {
    double worst = -1.0;
    for (const auto& level : levels_) {
      const auto limit = detail::read_limit_file(level.memory_max.c_str());
      if (!limit || limit->unlimited) continue;
      const auto current = detail::read_number_file(level.memory_current.c_str());
      if (!current) continue;
      const std::uint64_t inactive =
          detail::read_keyed_value(level.memory_stat.c_str(), "inactive_file").value_or(0);
      const std::uint64_t used = *current - std::min(inactive, *current);
      const double f = limit->value == 0 ? 1.0 : static_cast<double>(used) / static_cast<double>(limit->value);
      if (f > worst) {
        worst = f;
        r.memory_used_bytes = used;
        r.memory_limit_bytes = limit->value;
      }
    }
    if (worst >= 0.0) {
      r.memory = detail::clamp_fraction(worst);
      r.memory_source = resource_source::cgroup;
      return;
    }
    if (const auto host = detail::read_meminfo(meminfo_.c_str())) {
      const std::uint64_t used = host->total - std::min(host->available, host->total);
      r.memory = detail::clamp_fraction(static_cast<double>(used) / static_cast<double>(host->total));
      r.memory_used_bytes = used;
      r.memory_limit_bytes = host->total;
      r.memory_source = resource_source::host;
    }
  }

  // Every cgroup level with a CPU quota limits the process; the one nearest
  // its quota is the reading. With none, the host's busy share from
  // /proc/stat. Each source is measured from the last time it was read.
  void sample_cpu(resource_readings& r) noexcept {
    const std::int64_t now = now_ns();
    double worst = -1.0;
    bool limited = false;
    for (auto& level : levels_) {
      const auto quota = detail::read_cpu_max(level.cpu_max.c_str());
      if (!quota || quota->unlimited) continue;
      limited = true;
      const auto usage = detail::read_keyed_value(level.cpu_stat.c_str(), "usage_usec");
      const auto before = std::exchange(level.last_usage_us, usage);
      const std::int64_t elapsed = now - std::exchange(level.last_ns, now);
      if (!usage || !before || *usage < *before || elapsed <= 0 || quota->quota_us == 0) continue;
      const double cpus_used = static_cast<double>(*usage - *before) * 1000.0 / static_cast<double>(elapsed);
      const double cpus_allowed = static_cast<double>(quota->quota_us) / static_cast<double>(quota->period_us);
      const double f = cpus_used / cpus_allowed;
      if (f > worst) {
        worst = f;
        r.cpu_used = cpus_used;
        r.cpu_limit = cpus_allowed;
      }
    }
    if (worst >= 0.0) {
      r.cpu = detail::clamp_fraction(worst);
      r.cpu_source = resource_source::cgroup;
      return;
    }
    if (limited) return;  // a quota applies, but no interval to measure yet
    const auto host = detail::read_proc_stat(proc_stat_.c_str());
    const auto before = std::exchange(last_host_cpu_, host);
    if (!host || !before || host->total <= before->total || host->idle < before->idle) return;
    const std::uint64_t total = host->total - before->total;
    const std::uint64_t idle = std::min(host->idle - before->idle, total);
    const double f = static_cast<double>(total - idle) / static_cast<double>(total);
    r.cpu = detail::clamp_fraction(f);
    r.cpu_source = resource_source::host;
    if (host->cpus != 0) {
      r.cpu_limit = static_cast<double>(host->cpus);
      r.cpu_used = *r.cpu * static_cast<double>(host->cpus);
    }
  }

  void sample_fds(resource_readings& r) const noexcept {
    r.open_fds = detail::count_directory_entries(fd_dir_.c_str());
    if (options_.fd_limit != 0) {
      r.fd_limit = options_.fd_limit;
    } else if (struct rlimit rl {}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
      r.fd_limit = static_cast<std::uint64_t>(rl.rlim_cur);
    }
    if (r.open_fds && r.fd_limit && *r.fd_limit != 0) {
      r.file_descriptors = detail::clamp_fraction(static_cast<double>(*r.open_fds) / static_cast<double>(*r.fd_limit));
    }
  }

  resource_sampler_options options_;
  Clock clock_;
  std::vector<detail::cgroup_level> levels_;  // the process's own cgroup first
  std::filesystem::path proc_stat_;
  std::filesystem::path meminfo_;
  std::filesystem::path statm_;
  std::filesystem::path fd_dir_;
  std::uint64_t page_size_ = 0;
  std::optional<detail::host_cpu> last_host_cpu_;
};

}  // namespace armor
