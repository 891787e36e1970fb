// Using ruvector from C++: every mechanism once, on Eigen row-major matrices, with the
// results checked against plain double-precision loops written here. Exits non-zero when a
// result is wrong, so the CTest test "cpp_example_run" fails then.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <ruvector/ruvector.hpp>

namespace {

using ruvector::RowMatrixXf;

int g_failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("  %-58s %s\n", what.c_str(), ok ? "ok" : "FAILED");
  if (!ok) ++g_failures;
}

double max_abs_diff(const RowMatrixXf& a, const Eigen::MatrixXd& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return INFINITY;
  return (a.cast<double>() - b).cwiseAbs().maxCoeff();
}

// softmax over each row of `scores`, in place; -inf entries get weight 0.
void softmax_rows(Eigen::MatrixXd& scores) {
  for (Eigen::Index i = 0; i < scores.rows(); ++i) {
    const double mx = scores.row(i).maxCoeff();
    if (!std::isfinite(mx)) {
      scores.row(i).setZero();
      continue;
    }
    scores.row(i) = (scores.row(i).array() - mx).exp();
    scores.row(i) /= scores.row(i).sum();
  }
}

void dot_product() {
  std::printf("DotProductAttention\n");
  const RowMatrixXf q = RowMatrixXf::Random(6, 16), k = RowMatrixXf::Random(9, 16), v = RowMatrixXf::Random(9, 4);
  ruvector::DotProductAttention attention;  // default config: scale = 1/sqrt(16)
  ruvector::DotProductOptions options;
  options.causal = true;
  const ruvector::AttentionOutput out = attention.compute(q, k, v, options);

  Eigen::MatrixXd s = q.cast<double>() * k.cast<double>().transpose() * 0.25;
  for (Eigen::Index i = 0; i < s.rows(); ++i)
    for (Eigen::Index j = i + 1; j < s.cols(); ++j) s(i, j) = -INFINITY;
  softmax_rows(s);
  check(max_abs_diff(out.values, s * v.cast<double>()) < 1e-5, "causal values match softmax(QK^T/4)V");
  check(max_abs_diff(out.weights, s) < 1e-6, "weights [6, 9] match");
  check(std::get<std::string>(out.metadata.at("attention_type")) == "dot_product", "metadata attention_type");

  options.need_weights = false;  // streaming: the 6×9 matrix is never formed
  const auto streamed = attention.compute(q, k, v, options);
  check(!streamed.has_weights() && max_abs_diff(streamed.values, s * v.cast<double>()) < 1e-5,
        "streaming (need_weights=false) gives the same values");

  try {
    attention.compute(q, RowMatrixXf::Random(9, 15), v);
    check(false, "mismatched key width throws");
  } catch (const ruvector::DimensionMismatch& e) {
    check(e.expected() == 16 && e.actual() == 15, std::string("DimensionMismatch: ") + e.what());
  }
}

}  // namespace

int main() {
  std::printf("ruvector C++ example: %zu threads, best SIMD backend %s\n", ruvector::get_num_threads(),
              ruvector::backend_name(ruvector::simd_backend()));
  // Every kernel set this CPU and build have gives the same numbers (within float rounding).
  for (ruvector::Backend b : {ruvector::Backend::Scalar, ruvector::Backend::Avx2, ruvector::Backend::Avx512,
                              ruvector::Backend::Neon}) {
    if (!ruvector::backend_supported(b)) continue;
    ruvector::set_simd_backend(ruvector::backend_name(b));
    std::printf("== backend %s\n", ruvector::backend_name(ruvector::simd_backend()));
    try {
      dot_product();
    } catch (const ruvector::Error& e) {
      std::printf("unexpected ruvector error: %s\n", e.what());
      return 2;
    }
  }
  ruvector::set_simd_backend("auto");
  if (g_failures) {
    std::printf("%d check(s) FAILED\n", g_failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}
