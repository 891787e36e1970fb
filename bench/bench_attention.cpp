// The SIMD kernels on their own (cpp/src/simd/kernels.hpp), per backend: the vector primitives
// on one thread, the GEMM and the fused attention kernel on one thread ("serial") and on the
// pool ("pool", through the same entry points the mechanisms use).
//   ./bench_attention --benchmark_filter='gemm/.*/pool'
#include <cmath>
#include <cstddef>
#include <vector>

#include "attention_core.hpp"
#include "bench_common.hpp"
#include "simd/kernels.hpp"

namespace {

using ruvector::simd::active_kernels;
using ruvector_bench::random_vector;
using ruvector_bench::register_per_backend;
using ruvector_bench::set_flops;

void vector_primitives() {
  const auto sizes = [](benchmark::internal::Benchmark* b) { b->ArgName("n")->Arg(64)->Arg(1024)->Arg(16384); };

  register_per_backend(
      "kernel_dot", "",
      [](benchmark::State& state) {
        const auto n = static_cast<std::size_t>(state.range(0));
        const auto x = random_vector(n, 1), y = random_vector(n, 2);
        const auto& k = active_kernels();
        for (auto _ : state) benchmark::DoNotOptimize(k.dot(x.data(), y.data(), n));
        set_flops(state, 2.0 * static_cast<double>(n));
      },
      sizes);

  register_per_backend(
      "kernel_axpy", "",
      [](benchmark::State& state) {
        const auto n = static_cast<std::size_t>(state.range(0));
        const auto x = random_vector(n, 1);
        auto y = random_vector(n, 2);
        const auto& k = active_kernels();
        for (auto _ : state) {
          k.axpy(1e-3f, x.data(), y.data(), n);
          benchmark::ClobberMemory();
        }
        set_flops(state, 2.0 * static_cast<double>(n));
      },
      sizes);

  register_per_backend(
      "kernel_softmax", "",
      [](benchmark::State& state) {
        const auto n = static_cast<std::size_t>(state.range(0));
        const auto x = random_vector(n, 3);
        std::vector<float> work(n);
        const auto& k = active_kernels();
        for (auto _ : state) {
          work = x;  // softmax works in place: start from the same scores every time
          k.softmax(work.data(), n);
          benchmark::DoNotOptimize(work.data());
        }
        state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
      },
      sizes);

  register_per_backend(
      "kernel_exp_shift_sum", "",
      [](benchmark::State& state) {
        const auto n = static_cast<std::size_t>(state.range(0));
        const auto x = random_vector(n, 4);
        std::vector<float> work(n);
        const auto& k = active_kernels();
        for (auto _ : state) {
          work = x;
          benchmark::DoNotOptimize(k.exp_shift_sum(work.data(), n, 1.0f));
        }
        state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
      },
      sizes);
}

void gemm() {
  for (bool pool : {false, true}) {
    for (bool transposed : {false, true}) {
      const std::string variant = std::string(transposed ? "BT" : "B") + (pool ? "/pool" : "/serial");
      register_per_backend(
          "kernel_gemm", variant,
          [pool, transposed](benchmark::State& state) {
            const auto m = static_cast<std::size_t>(state.range(0)), n = static_cast<std::size_t>(state.range(1)),
                       kk = static_cast<std::size_t>(state.range(2));
            const auto a = random_vector(m * kk, 5), b = random_vector(kk * n, 6), bias = random_vector(n, 7);
            std::vector<float> c(m * n);
            ruvector::simd::GemmParams p;
            p.a = a.data();
            p.lda = kk;
            p.b = b.data();
            p.ldb = transposed ? kk : n;
            p.b_transposed = transposed;
            p.c = c.data();
            p.ldc = n;
            p.bias = bias.data();
            p.m = m;
            p.n = n;
            p.k = kk;
            for (auto _ : state) {
              if (pool) {
                ruvector::detail::run_gemm(p);
              } else if (!active_kernels().gemm(p, {})) {
                state.SkipWithError("gemm could not allocate its scratch memory");
                break;
              }
              benchmark::DoNotOptimize(c.data());
            }
            set_flops(state, 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(kk));
          },
          [](benchmark::internal::Benchmark* b) {
            b->ArgNames({"M", "N", "K"})->Args({64, 64, 64})->Args({256, 256, 256})->Args({1024, 256, 1024});
          });
    }
  }
}

void flash_attention() {
  for (bool pool : {false, true}) {
    for (bool weights : {true, false}) {
      const std::string variant = std::string(weights ? "weights" : "streaming") + (pool ? "/pool" : "/serial");
      register_per_backend(
          "kernel_flash", variant,
          [pool, weights](benchmark::State& state) {
            const auto lq = static_cast<std::size_t>(state.range(0)), lk = static_cast<std::size_t>(state.range(1)),
                       d = static_cast<std::size_t>(state.range(2));
            const auto q = random_vector(lq * d, 8), k = random_vector(lk * d, 9), v = random_vector(lk * d, 10);
            std::vector<float> out(lq * d), w(weights ? lq * lk : 0);
            auto p = ruvector::simd::FlashParams::dense(q.data(), k.data(), v.data(), out.data(), lq, lk, d, d,
                                                        1.0f / std::sqrt(static_cast<float>(d)));
            p.weights = weights ? w.data() : nullptr;
            p.ldw = lk;
            for (auto _ : state) {
              if (pool) {
                ruvector::detail::run_flash(p);
              } else if (!active_kernels().flash_attention(p, {})) {
                state.SkipWithError("flash_attention could not allocate its scratch memory");
                break;
              }
              benchmark::DoNotOptimize(out.data());
            }
            set_flops(state, 4.0 * static_cast<double>(lq) * static_cast<double>(lk) * static_cast<double>(d));
          },
          [](benchmark::internal::Benchmark* b) {
            b->ArgNames({"Lq", "Lk", "D"})
                ->Args({128, 128, 64})
                ->Args({256, 256, 64})
                ->Args({1024, 1024, 64})
                ->Args({256, 4096, 128});
          });
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ruvector_bench::run_main(argc, argv, [] {
    vector_primitives();
    gemm();
    flash_attention();
  });
}
