// How much this process may allocate: the machine's memory, capped by the cgroup (containers),
// RLIMIT_AS / RLIMIT_DATA and, for large requests on Linux, what is free now (MemAvailable).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>

#include "memory/memory.hpp"
#include "messages.hpp"
#include "ruvector/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <unistd.h>
#endif

namespace ruvector::memory {
namespace {

std::uint64_t read_physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
#endif
  return std::numeric_limits<std::uint64_t>::max();
}

#if defined(__linux__)
std::uint64_t read_limit_file(const std::string& path) {
  std::ifstream f(path);
  unsigned long long v = 0;  // "max" (no limit) does not parse
  if (f >> v && v > 0) return v;
  return std::numeric_limits<std::uint64_t>::max();
}

// This process's cgroup (v2: the "0::<path>" line of /proc/self/cgroup; v1: the memory
// controller's line), "" when unknown.
std::string own_cgroup(const std::string& proc_cgroup, bool v2) {
  std::ifstream f(proc_cgroup);
  std::string line;
  while (std::getline(f, line)) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const bool match = v2 ? (line.compare(0, first, "0") == 0 && controllers.empty())
                          : ("," + controllers + ",").find(",memory,") != std::string::npos;
    if (match) return line.substr(second + 1);
  }
  return "";
}

// The smallest memory limit of the cgroups from `root` + `path` up to `root` (containers get
// less than the machine has, and a nested cgroup may have a limit of its own; issue 19).
std::uint64_t smallest_limit_up(const std::string& root, std::string path, const char* file) {
  std::uint64_t limit = std::numeric_limits<std::uint64_t>::max();
  if (path.find("..") != std::string::npos) path.clear();
  for (;;) {
    limit = std::min(limit, read_limit_file(root + path + "/" + file));
    if (path.empty() || path == "/") break;
    const auto slash = path.rfind('/');
    path = slash == std::string::npos ? std::string() : path.substr(0, slash);
  }
  return limit;
}

std::uint64_t read_cgroup_limit() {
  return detail::cgroup_memory_limit("/sys/fs/cgroup", "/proc/self/cgroup");
}

// MemAvailable: what can be allocated now without swapping (read fresh for large requests).
std::uint64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  unsigned long long kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return static_cast<std::uint64_t>(kb) * 1024;
  return std::numeric_limits<std::uint64_t>::max();
}
#endif

std::uint64_t read_memory_limit() {
  std::uint64_t limit = read_physical_memory();
#if defined(__linux__)
  limit = std::min(limit, read_cgroup_limit());
#endif
#if defined(__unix__) || defined(__APPLE__)
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    struct rlimit rl;
    if (getrlimit(resource, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      limit = std::min<std::uint64_t>(limit, static_cast<std::uint64_t>(rl.rlim_cur));
  }
#endif
  return limit;
}

// Read once: these are system calls, too slow for every tiny call.
std::uint64_t memory_limit_bytes() {
  static const std::uint64_t bytes = read_memory_limit();
  return bytes;
}

}  // namespace

#if defined(__linux__)
std::uint64_t detail::cgroup_memory_limit(const std::string& cgroup_fs, const std::string& proc_cgroup) {
  return std::min(smallest_limit_up(cgroup_fs, own_cgroup(proc_cgroup, true), "memory.max"),
                  smallest_limit_up(cgroup_fs + "/memory", own_cgroup(proc_cgroup, false), "memory.limit_in_bytes"));
}
#endif

std::size_t checked_elements(std::int64_t rows, std::int64_t cols, const char* what, const char* hint) {
  const double bytes = static_cast<double>(rows) * static_cast<double>(cols) * sizeof(float);
  bool too_big = rows < 0 || cols < 0 || bytes > static_cast<double>(memory_limit_bytes());
#if defined(__linux__)
  // Linux overcommits: a request that fits the machine but not what is free now would be
  // granted and then OOM-kill the process while being written.
  if (!too_big && bytes > 256.0 * 1024 * 1024) too_big = bytes > static_cast<double>(available_memory());
#endif
  if (too_big) {
    std::ostringstream mb;  // a double: shapes near 2^63 elements overflow any integer count
    mb << std::setprecision(bytes < 1e15 ? 15 : 3) << (rows < 0 || cols < 0 ? 0.0 : std::floor(bytes / 1e6));
    throw InvalidInput(std::string(what) + " of shape " + ruvector::detail::shape_str({rows, cols}) + " needs " + mb.str() +
                       " MB, more than this process can allocate now; " + hint);
  }
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
}

}  // namespace ruvector::memory
