// A temporary directory laid out like /sys/fs/cgroup and /proc, for the
// tests of armor::resource_sampler: files are written and removed by path
// relative to the tree, and the tree goes away with the object.
#pragma once

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <unistd.h>

namespace armor_test {

class resource_tree {
 public:
  resource_tree() {
    static std::atomic<int> next{0};
    root_ = std::filesystem::temp_directory_path() /
            ("armor-resource-" + std::to_string(::getpid()) + "-" + std::to_string(next++));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "cgroup");
    std::filesystem::create_directories(root_ / "proc" / "self" / "fd");
  }
  resource_tree(const resource_tree&) = delete;
  resource_tree& operator=(const resource_tree&) = delete;
  ~resource_tree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  [[nodiscard]] std::filesystem::path cgroup() const { return root_ / "cgroup"; }
  [[nodiscard]] std::filesystem::path proc() const { return root_ / "proc"; }

  /// Writes `content` to <root>/<relative>, making its directories.
  void write(const std::filesystem::path& relative, std::string_view content) const {
    const auto path = root_ / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out{path, std::ios::trunc};
    out << content;
  }
  void remove(const std::filesystem::path& relative) const { std::filesystem::remove_all(root_ / relative); }

  /// Makes `n` entries in <proc>/self/fd, as a process with n open descriptors.
  void open_fds(int n) const {
    std::filesystem::remove_all(root_ / "proc" / "self" / "fd");
    std::filesystem::create_directories(root_ / "proc" / "self" / "fd");
    for (int i = 0; i < n; ++i) write(std::filesystem::path{"proc/self/fd"} / std::to_string(i), "");
  }

 private:
  std::filesystem::path root_;
};

}  // namespace armor_test
