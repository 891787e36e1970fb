// Using ruvector from C++: every mechanism once, on Eigen row-major matrices, with the
// results checked against plain double-precision loops written here. Exits non-zero when a
// result is wrong, so the CTest test "cpp_example_run" fails then.
//
// Every mechanism has the same shape: it is built from an AttentionConfig (plus, where it has
// them, its own settings: GraphConfig, TemporalConfig), and compute(inputs..., options) takes
// one <Mechanism>Options struct per call, each with need_weights. MultiHeadAttention and
// GraphAttention carry their weights in a StateDict: torch / PyG state_dict names → Parameter
// {shape, row-major data}.
#include <algorithm>
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

void multi_head() {
  std::printf("MultiHeadAttention\n");
  ruvector::AttentionConfig config;
  config.num_heads = 2;
  config.head_dim = 4;  // embed_dim = 8
  ruvector::MultiHeadAttention attention(config);
  // Load weights by torch's state_dict names (here random ones), as from nn.MultiheadAttention.
  ruvector::StateDict weights;
  for (const auto& [name, shape] : attention.weight_shapes()) {
    ruvector::Parameter p;
    p.shape = shape;
    p.data = shape.size() == 1 ? RowMatrixXf::Random(1, shape[0]) : RowMatrixXf::Random(shape[0], shape[1]);
    p.data *= 0.5f;
    weights[name] = p;
  }
  attention.set_weights(weights);
  const RowMatrixXf q = RowMatrixXf::Random(5, 8), k = RowMatrixXf::Random(7, 8), v = RowMatrixXf::Random(7, 8);
  ruvector::MultiHeadOptions options;
  options.average_weights = false;  // weights [H, Lq, Lk], stored as [H·Lq, Lk]
  const auto out = attention.compute(q, k, v, options);

  // Reference: torch's packed in-projection, per-head softmax(QhKhᵀ/√d)Vh, out-projection.
  const Eigen::MatrixXd w_in = weights.at("in_proj_weight").data.cast<double>();
  const Eigen::RowVectorXd b_in = weights.at("in_proj_bias").data.cast<double>();
  auto project = [&](const RowMatrixXf& x, int block) {
    Eigen::MatrixXd y = x.cast<double>() * w_in.middleRows(block * 8, 8).transpose();
    y.rowwise() += b_in.segment(block * 8, 8);
    return y;
  };
  const Eigen::MatrixXd Q = project(q, 0), K = project(k, 1), V = project(v, 2);
  Eigen::MatrixXd concat(5, 8);
  double weight_err = 0;
  for (int h = 0; h < 2; ++h) {
    Eigen::MatrixXd s = Q.middleCols(h * 4, 4) * K.middleCols(h * 4, 4).transpose() * 0.5;
    softmax_rows(s);
    concat.middleCols(h * 4, 4) = s * V.middleCols(h * 4, 4);
    weight_err = std::max(weight_err, max_abs_diff(out.weights.middleRows(h * 5, 5), s));
  }
  Eigen::MatrixXd ref = concat * weights.at("out_proj.weight").data.cast<double>().transpose();
  ref.rowwise() += weights.at("out_proj.bias").data.cast<double>().row(0);
  check(max_abs_diff(out.values, ref) < 1e-5, "values [5, 8] match torch's formula with loaded weights");
  check(out.weights_shape == std::vector<ruvector::Index>{2, 5, 7} && weight_err < 1e-6, "per-head weights [2, 5, 7]");
}

void graph() {
  std::printf("GraphAttention (GAT)\n");
  // 4 nodes, edges source → target; the given self-loop (2, 2) is replaced by one per node.
  ruvector::RowMatrixXi64 edges(5, 2);
  edges << 0, 1, 1, 2, 2, 0, 3, 0, 2, 2;
  const ruvector::GraphStructure graph(edges, 4);
  ruvector::AttentionConfig config;
  config.num_heads = 2;
  config.head_dim = 3;
  ruvector::GraphConfig graph_config;
  graph_config.in_features = 5;  // Glorot weights from config.seed now
  const ruvector::GraphAttention gat(config, graph_config);
  const RowMatrixXf x = RowMatrixXf::Random(4, 5);
  const auto out = gat.compute(x, graph);

  // Reference (PyG's GATConv): h = x Wᵀ; e_ji = LeakyReLU(a_src·h_j + a_dst·h_i, 0.2) per head,
  // softmax over the edges into i (self-loop included), out_i = Σ α_ji h_j, heads concatenated.
  // The weights come with PyG's names and shapes: att_src [1, H, C], its data as [H, C].
  const ruvector::StateDict w = gat.get_weights();
  check(w.at("att_src").shape == std::vector<ruvector::Index>{1, 2, 3} &&
            w.at("lin.weight").shape == std::vector<ruvector::Index>{6, 5},
        "weights by PyG's names and shapes");
  const Eigen::MatrixXd h = x.cast<double>() * w.at("lin.weight").data.cast<double>().transpose();  // [4, 6]
  const Eigen::MatrixXd att_src = w.at("att_src").data.cast<double>(), att_dst = w.at("att_dst").data.cast<double>();
  std::vector<std::vector<int>> incoming = {{2, 3, 0}, {0, 1}, {1, 2}, {3}};  // sources per target, self-loop last
  Eigen::MatrixXd ref(4, 6);
  for (int i = 0; i < 4; ++i)
    for (int head = 0; head < 2; ++head) {
      std::vector<double> e;
      for (int j : incoming[i]) {
        const double z =
            h.row(j).segment(head * 3, 3).dot(att_src.row(head)) + h.row(i).segment(head * 3, 3).dot(att_dst.row(head));
        e.push_back(z > 0 ? z : 0.2 * z);
      }
      double mx = -INFINITY, sum = 0;
      for (double v : e) mx = std::max(mx, v);
      for (double& v : e) sum += (v = std::exp(v - mx));
      Eigen::RowVectorXd acc = Eigen::RowVectorXd::Zero(3);
      for (std::size_t n = 0; n < e.size(); ++n) acc += e[n] / sum * h.block(incoming[i][n], head * 3, 1, 3);
      ref.block(i, head * 3, 1, 3) = acc;
    }
  ref.rowwise() += w.at("bias").data.cast<double>().row(0);
  check(max_abs_diff(out.values, ref) < 1e-5, "values [4, 6] match GATConv's formula");
  const auto& used = std::get<ruvector::RowMatrixXi64>(out.metadata.at("edges"));
  check(out.weights.rows() == 8 && out.weights.cols() == 2 && used.rows() == 8,
        "weights [E'=8, H=2]: 4 edges without the self-loop + 4 self-loops");

  ruvector::GraphOptions options;
  options.need_weights = false;  // no per-edge coefficients
  const auto values_only = gat.compute(x, graph, options);
  check(!values_only.has_weights() && max_abs_diff(values_only.values, ref) < 1e-5,
        "need_weights=false gives the same values");
}

void temporal() {
  std::printf("TemporalAttention\n");
  ruvector::TemporalConfig temporal;
  temporal.causal = true;
  temporal.half_life = 2.0;  // λ = ln 2 / 2
  const ruvector::TemporalAttention attention({}, temporal);
  const RowMatrixXf x = RowMatrixXf::Random(6, 8);
  Eigen::VectorXd t(6);
  t << 0.0, 3.5, 1.0, 2.0, 7.0, 7.5;  // any order: causality is by time
  const auto out = attention.compute(x, t);

  const double lambda = std::log(2.0) / 2.0, scale = 1.0 / std::sqrt(8.0);
  Eigen::MatrixXd s = x.cast<double>() * x.cast<double>().transpose() * scale;
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) s(i, j) = t(j) <= t(i) ? s(i, j) - lambda * std::abs(t(i) - t(j)) : -INFINITY;
  softmax_rows(s);
  check(max_abs_diff(out.values, s * x.cast<double>()) < 1e-5,
        "values [6, 8] match softmax(s)X with decay and time order");
  check(std::abs(std::get<double>(out.metadata.at("decay_rate")) - lambda) < 1e-12,
        "metadata decay_rate = ln 2 / half_life");

  ruvector::TemporalOptions options;
  options.need_weights = false;  // streaming: the 6×6 matrix is never formed
  const auto streamed = attention.compute(x, t, options);
  check(!streamed.has_weights() && max_abs_diff(streamed.values, s * x.cast<double>()) < 1e-5,
        "streaming (need_weights=false) gives the same values");
}

void hierarchical() {
  std::printf("HierarchicalAttention\n");
  const RowMatrixXf l0 = RowMatrixXf::Random(3, 4), l1 = RowMatrixXf::Random(5, 4);
  const ruvector::HierarchicalAttention attention;
  const auto out = attention.compute({l0, l1});

  // Reference: within a level, context = mean row, α = softmax(scale·X·u), s = αᵀX; across
  // levels β = softmax(scale·S·ū) with ū the mean of the s_l; values = βᵀS.
  const double scale = 0.5;  // 1/sqrt(4)
  Eigen::MatrixXd S(2, 4), alpha = Eigen::MatrixXd::Zero(2, 5);
  int l = 0;
  for (const RowMatrixXf* level : {&l0, &l1}) {
    const Eigen::MatrixXd X = level->cast<double>();
    Eigen::MatrixXd a = (X * X.colwise().mean().transpose()).transpose() * scale;  // [1, N]
    softmax_rows(a);
    alpha.block(l, 0, 1, X.rows()) = a;
    S.row(l++) = a * X;
  }
  Eigen::MatrixXd beta = (S * S.colwise().mean().transpose()).transpose() * scale;
  softmax_rows(beta);
  check(max_abs_diff(out.values, beta * S) < 1e-5, "values [1, 4] = beta^T S");
  check(max_abs_diff(out.weights, alpha) < 1e-6, "weights [2, 5]: the alpha of each level, zero-padded");

  ruvector::HierarchicalOptions options;
  options.need_weights = false;
  const auto pooled = attention.compute({l0, l1}, options);
  check(!pooled.has_weights() && max_abs_diff(pooled.values, beta * S) < 1e-5,
        "need_weights=false gives the same values");
}

}  // namespace

int main() {
  std::printf("ruvector C++ example: %zu threads, best SIMD backend %s\n", ruvector::get_num_threads(),
              ruvector::backend_name(ruvector::simd_backend()));
  // Every kernel set this CPU and build have gives the same numbers (within float rounding).
  for (ruvector::Backend b :
       {ruvector::Backend::Scalar, ruvector::Backend::Avx2, ruvector::Backend::Avx512, ruvector::Backend::Neon}) {
    if (!ruvector::backend_supported(b)) continue;
    ruvector::set_simd_backend(ruvector::backend_name(b));
    std::printf("== backend %s\n", ruvector::backend_name(ruvector::simd_backend()));
    try {
      dot_product();
      multi_head();
      graph();
      temporal();
      hierarchical();
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
