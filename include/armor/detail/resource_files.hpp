// armor/detail/resource_files.hpp: reading Linux's /proc and cgroup v2 files
// without allocating, for armor::resource_sampler. Not API.
//
// Every reader opens its file, reads it into a buffer on the stack, closes it
// and parses with std::from_chars: no heap, no exception. A file that is
// missing, unreadable or not in the expected form gives std::nullopt.
#pragma once

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace armor::detail {

/// A file descriptor, closed when it goes out of scope.
class scoped_fd {
 public:
  explicit scoped_fd(int fd) noexcept : fd_(fd) {}
  scoped_fd(const scoped_fd&) = delete;
  scoped_fd& operator=(const scoped_fd&) = delete;
  ~scoped_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }

 private:
  int fd_;
};

[[nodiscard]] inline int open_retrying(const char* path, int flags) noexcept {
  int fd = -1;
  do {
    fd = ::open(path, flags | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

/// Calls `f(line)` for each line of the file at `path` (without its '\n')
/// until `f` returns false. Lines longer than the 4 KiB buffer are passed
/// cut to its size (no file armor reads has a line of interest that long:
/// /proc/stat's `intr` line is the long one, and it is skipped). Returns
/// false when the file could not be opened or read. Throws only what `f` throws.
template <class F>
bool for_each_line(const char* path, F&& f) noexcept(noexcept(f(std::string_view{}))) {
  scoped_fd fd{open_retrying(path, O_RDONLY)};
  if (!fd.valid()) return false;
  char buf[4096];
  std::size_t have = 0;
  bool skipping = false;  // the rest of a line already passed cut
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf + have, sizeof buf - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      if (have > 0 && !skipping) (void)f(std::string_view{buf, have});
      return true;
    }
    have += static_cast<std::size_t>(n);
    std::size_t pos = 0;
    while (pos < have) {
      const void* nl = std::memchr(buf + pos, '\n', have - pos);
      if (nl == nullptr) break;
      const auto end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf);
      if (!skipping && !f(std::string_view{buf + pos, end - pos})) return true;
      skipping = false;
      pos = end + 1;
    }
    if (pos == 0 && have == sizeof buf) {  // one line fills the buffer
      if (!skipping && !f(std::string_view{buf, have})) return true;
      skipping = true;
      have = 0;
      continue;
    }
    std::memmove(buf, buf + pos, have - pos);
    have -= pos;
  }
}

[[nodiscard]] constexpr bool is_blank(char c) noexcept { return c == ' ' || c == '\t' || c == '\r'; }

/// The next blank-separated field of `s`, removed from it ("" at the end).
[[nodiscard]] constexpr std::string_view next_field(std::string_view& s) noexcept {
  std::size_t i = 0;
  while (i < s.size() && is_blank(s[i])) ++i;
  std::size_t j = i;
  while (j < s.size() && !is_blank(s[j])) ++j;
  const std::string_view field = s.substr(i, j - i);
  s.remove_prefix(j);
  return field;
}

/// A decimal unsigned number that is the whole of `s`.
[[nodiscard]] constexpr std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

/// True when nothing but blanks is left in `s`.
[[nodiscard]] constexpr bool only_blanks(std::string_view s) noexcept {
  for (char c : s) {
    if (!is_blank(c)) return false;
  }
  return true;
}

/// A file holding one number (memory.current): its value.
[[nodiscard]] inline std::optional<std::uint64_t> read_number_file(const char* path) noexcept {
  std::optional<std::uint64_t> out;
  bool first = true;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    if (first) {
      const auto v = parse_u64(next_field(line));
      if (v && only_blanks(line)) out = v;
    }
    first = false;
    return false;
  });
  return out;
}

/// A limit file: a number, or "max" for none.
struct limit_value {
  bool unlimited = false;
  std::uint64_t value = 0;
};

/// memory.max: "max" or a number of bytes.
[[nodiscard]] inline std::optional<limit_value> read_limit_file(const char* path) noexcept {
  std::optional<limit_value> out;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    const std::string_view field = next_field(line);
    if (!only_blanks(line)) return false;
    if (field == "max") {
      out = limit_value{true, 0};
    } else if (const auto v = parse_u64(field)) {
      out = limit_value{false, *v};
    }
    return false;
  });
  return out;
}

/// cpu.max: "<quota> <period>" in microseconds, the quota "max" for none.
struct cpu_quota {
  bool unlimited = false;
  std::uint64_t quota_us = 0;
  std::uint64_t period_us = 0;
};

[[nodiscard]] inline std::optional<cpu_quota> read_cpu_max(const char* path) noexcept {
  std::optional<cpu_quota> out;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    const std::string_view quota = next_field(line);
    const auto period = parse_u64(next_field(line));
    if (!period || *period == 0 || !only_blanks(line)) return false;
    if (quota == "max") {
      out = cpu_quota{true, 0, *period};
    } else if (const auto q = parse_u64(quota)) {
      out = cpu_quota{false, *q, *period};
    }
    return false;
  });
  return out;
}

/// The value of the line `<key> <number>` in a flat keyed file (cpu.stat's
/// usage_usec, memory.stat's inactive_file).
[[nodiscard]] inline std::optional<std::uint64_t> read_keyed_value(const char* path, std::string_view key) noexcept {
  std::optional<std::uint64_t> out;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    if (next_field(line) != key) return true;
    const auto v = parse_u64(next_field(line));
    if (v && only_blanks(line)) out = v;
    return false;
  });
  return out;
}

/// /proc/meminfo: MemTotal and MemAvailable, in bytes.
struct host_memory {
  std::uint64_t total = 0;
  std::uint64_t available = 0;
};

[[nodiscard]] inline std::optional<host_memory> read_meminfo(const char* path) noexcept {
  std::optional<std::uint64_t> total;
  std::optional<std::uint64_t> available;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    const std::string_view key = next_field(line);
    std::optional<std::uint64_t>* target = key == "MemTotal:" ? &total : key == "MemAvailable:" ? &available : nullptr;
    if (target != nullptr) {
      const auto kib = parse_u64(next_field(line));
      const std::string_view unit = next_field(line);
      if (kib && unit == "kB" && *kib <= UINT64_MAX / 1024) *target = *kib * 1024;
    }
    return !(total && available);
  });
  if (!total || !available || *total == 0) return std::nullopt;
  return host_memory{*total, *available};
}

/// /proc/stat: the "cpu" line's busy and total ticks, and the number of
/// "cpuN" lines.
struct host_cpu {
  std::uint64_t total = 0;
  std::uint64_t idle = 0;  // idle + iowait
  std::uint32_t cpus = 0;
};

[[nodiscard]] inline std::optional<host_cpu> read_proc_stat(const char* path) noexcept {
  host_cpu out;
  bool have_total = false;
  bool bad = false;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    const std::string_view key = next_field(line);
    if (key == "cpu") {
      // user nice system idle iowait irq softirq steal; guest and guest_nice
      // follow and are already counted in user and nice.
      for (int i = 0; i < 8; ++i) {
        const std::string_view field = next_field(line);
        if (field.empty() && i >= 4) break;  // old kernels: fewer columns
        const auto v = parse_u64(field);
        if (!v) {
          bad = true;
          return false;
        }
        out.total += *v;
        if (i == 3 || i == 4) out.idle += *v;
      }
      have_total = true;
      return true;
    }
    if (key.size() > 3 && key.substr(0, 3) == "cpu" && key[3] >= '0' && key[3] <= '9') {
      ++out.cpus;
      return true;
    }
    return !have_total;  // the cpuN lines follow the cpu line; stop after them
  });
  if (bad || !have_total) return std::nullopt;
  return out;
}

/// /proc/self/statm: the resident set, in pages (its second field).
[[nodiscard]] inline std::optional<std::uint64_t> read_statm_resident(const char* path) noexcept {
  std::optional<std::uint64_t> out;
  (void)for_each_line(path, [&](std::string_view line) noexcept {
    if (parse_u64(next_field(line))) out = parse_u64(next_field(line));
    return false;
  });
  return out;
}

/// The number of entries of the directory at `path` (/proc/self/fd), "."
/// and ".." aside, read with getdents64 into a stack buffer (opendir would
/// allocate). On procfs the descriptor this function opens is one of the
/// entries; it is not counted.
[[nodiscard]] inline std::optional<std::uint64_t> count_directory_entries(const char* path) noexcept {
  scoped_fd fd{open_retrying(path, O_RDONLY | O_DIRECTORY)};
  if (!fd.valid()) return std::nullopt;
  struct statfs fs {};
  constexpr long proc_super_magic = 0x9fa0;
  const bool on_procfs = ::fstatfs(fd.get(), &fs) == 0 && static_cast<long>(fs.f_type) == proc_super_magic;
  alignas(8) char buf[4096];
  std::uint64_t count = 0;
  for (;;) {
    const long n = ::syscall(SYS_getdents64, fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (n == 0) break;
    // struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[].
    constexpr std::size_t reclen_at = 16;
    constexpr std::size_t name_at = 19;
    for (std::size_t pos = 0; pos < static_cast<std::size_t>(n);) {
      std::uint16_t reclen = 0;
      if (pos + name_at > static_cast<std::size_t>(n)) return std::nullopt;
      std::memcpy(&reclen, buf + pos + reclen_at, sizeof reclen);
      if (reclen <= name_at || pos + reclen > static_cast<std::size_t>(n)) return std::nullopt;
      const char* name_begin = buf + pos + name_at;
      const std::string_view name{name_begin, ::strnlen(name_begin, reclen - name_at)};
      pos += reclen;
      if (name == "." || name == "..") continue;
      if (on_procfs && parse_u64(name) == static_cast<std::uint64_t>(fd.get())) continue;
      ++count;
    }
  }
  return count;
}

}  // namespace armor::detail
