// The memory runtime (cpp/src/memory): output reuse, huge-page scratch, allocation limits and
// the caches' fork handling.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "memory/memory.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/types.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace {

// A recycled large output serves the next request of its element count, and only one request.
TEST(OutputReuse, RecycledBufferServesTheSameSizeOnce) {
  ruvector::RowMatrixXf big(512, 1024);  // 2 MB
  const float* buffer = big.data();
  ruvector::memory::recycle_output(std::move(big));
  const ruvector::RowMatrixXf other = ruvector::memory::output_matrix(1024, 1024);  // another size: fresh
  EXPECT_NE(other.data(), buffer);
  const ruvector::RowMatrixXf reused = ruvector::memory::output_matrix(1024, 512);  // same count, new shape
  EXPECT_EQ(reused.data(), buffer);
  EXPECT_EQ(reused.rows(), 1024);
  EXPECT_EQ(reused.cols(), 512);
  const ruvector::RowMatrixXf again = ruvector::memory::output_matrix(1024, 512);  // taken already: fresh
  EXPECT_NE(again.data(), buffer);
}

// Small outputs (16 KB to 1 MB, a batch's items) are kept many at a time, 64 MB in all: the
// newest serve first, and past the cap the oldest are let go.
TEST(OutputReuse, SmallBuffersAreKeptUpToTheCapOldestLetGoFirst) {
  constexpr std::size_t kCap = std::size_t{64} << 20, kBytes = 256 * 64 * sizeof(float);  // 64 KB each
  constexpr std::size_t kKept = kCap / kBytes, kExtra = 16;
  std::vector<const float*> recycled;
  for (std::size_t i = 0; i < kKept + kExtra; ++i) {
    ruvector::RowMatrixXf m(256, 64);
    recycled.push_back(m.data());
    ruvector::memory::recycle_output(std::move(m));
  }
  std::vector<ruvector::RowMatrixXf> taken;
  for (std::size_t i = 0; i < kKept; ++i) taken.push_back(ruvector::memory::output_matrix(64, 256));
  for (std::size_t i = 0; i < kKept; ++i)  // newest first; the first kExtra recycled were let go
    EXPECT_EQ(taken[i].data(), recycled[recycled.size() - 1 - i]) << i;
  const ruvector::RowMatrixXf tiny = ruvector::memory::output_matrix(8, 8);  // below 16 KB: plain malloc
  EXPECT_EQ(tiny.size(), 64);
}

// Large scratch blocks go back to the pool and serve the next request of about their size,
// aligned to the 2 MiB huge page (Linux); smaller ones come from malloc.
TEST(HugePageScratch, LargeBlocksAreAlignedAndReused) {
  constexpr std::size_t kFloats = std::size_t{37} << 18;  // 37 MiB: a size no other test uses
  const float* first = nullptr;
  {
    ruvector::memory::FloatBuffer a(kFloats);
    first = a.get();
    a.get()[0] = 1.0f;
    a.get()[kFloats - 1] = 2.0f;  // the whole block is usable
  }
  ruvector::memory::FloatBuffer b(kFloats);
#if defined(__linux__)
  EXPECT_EQ(b.get(), first);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.get()) % (std::size_t{2} << 20), 0u);
#endif
  ruvector::memory::FloatBuffer small(1000), none(0);
  ASSERT_NE(small.get(), nullptr);
  small.get()[999] = 1.0f;
  EXPECT_EQ(none.get(), nullptr);
}

// A request that cannot fit is refused before any allocation, naming the buffer and its shape
// and saying how to avoid it.
TEST(MemoryLimits, ImpossibleRequestsNameTheBufferAndTheFix) {
  EXPECT_EQ(ruvector::memory::checked_elements(3, 4, "scores", "use less"), 12u);
  try {
    ruvector::memory::checked_elements(std::int64_t{1} << 40, std::int64_t{1} << 20, "attention weights",
                                       "pass need_weights=False");
    FAIL() << "expected InvalidInput";
  } catch (const ruvector::InvalidInput& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("attention weights of shape [1099511627776, 1048576]"), std::string::npos) << what;
    EXPECT_NE(what.find("pass need_weights=False"), std::string::npos) << what;
  }
  EXPECT_THROW(ruvector::memory::checked_elements(-1, 4, "scores", "use less"), ruvector::InvalidInput);
}

#if defined(__unix__) || defined(__APPLE__)
// A forked child can use both caches: their locks are released on both sides of fork(). A lock
// left held would hang the child; the alarm turns that into a failure.
TEST(MemoryFork, ChildUsesTheCaches) {
  ruvector::memory::recycle_output(ruvector::RowMatrixXf(512, 1024));
  { ruvector::memory::FloatBuffer warm(std::size_t{2} << 20); }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);
    const ruvector::RowMatrixXf m = ruvector::memory::output_matrix(512, 1024);
    ruvector::memory::FloatBuffer scratch(std::size_t{2} << 20);
    scratch.get()[0] = m.size() == 512 * 1024 ? 1.0f : 0.0f;
    _exit(scratch.get()[0] == 1.0f ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}
#endif

}  // namespace

#if defined(__linux__)
namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Issue 19: a process in a nested cgroup is bounded by its own cgroup's limit and by its
// parents', the smallest of them, not by the root files only.
TEST(MemoryLimits, NestedCgroupLimitsAreReadUpToTheRoot) {
  char tmpl[] = "/tmp/ruvector-cgroup-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string fs = tmpl;
  for (const char* dir : {"/a", "/a/b", "/a/b/c", "/memory", "/memory/m", "/memory/m/n"})
    ASSERT_EQ(::mkdir((fs + dir).c_str(), 0700), 0);
  write_file(fs + "/memory.max", "max\n");
  write_file(fs + "/a/memory.max", "8000000\n");
  write_file(fs + "/a/b/memory.max", "max\n");
  write_file(fs + "/a/b/c/memory.max", "9000000\n");
  const std::string proc = fs + "/proc-cgroup";
  write_file(proc, "0::/a/b/c\n");
  EXPECT_EQ(ruvector::memory::detail::cgroup_memory_limit(fs, proc), 8000000u);  // the parent's is smaller
  write_file(fs + "/a/b/c/memory.max", "3000000\n");
  EXPECT_EQ(ruvector::memory::detail::cgroup_memory_limit(fs, proc), 3000000u);  // its own
  write_file(proc, "0::/\n");
  EXPECT_EQ(ruvector::memory::detail::cgroup_memory_limit(fs, proc), UINT64_MAX);  // none set
  // cgroup v1: the memory controller's line, under <fs>/memory.
  write_file(fs + "/memory/m/memory.limit_in_bytes", "5000000\n");
  write_file(fs + "/memory/m/n/memory.limit_in_bytes", "9223372036854771712\n");
  write_file(proc, "4:memory:/m/n\n3:cpu:/x\n");
  EXPECT_EQ(ruvector::memory::detail::cgroup_memory_limit(fs, proc), 5000000u);
  std::system(("rm -rf " + fs).c_str());
}

}  // namespace
#endif
