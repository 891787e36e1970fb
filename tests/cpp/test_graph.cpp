// The C++ API of GraphStructure and GraphAttention (docs/contract.md §7): the CSR form, GAT/GATv2 against
// plain double-precision loops on every backend this machine supports, typed errors, weights.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "graph/internal.hpp"
#include "ruvector/ruvector.hpp"
#include "simd/kernels.hpp"

namespace {

using ruvector::Backend;
using ruvector::GraphAttention;
using ruvector::GraphConfig;
using ruvector::GraphStructure;
using ruvector::GraphVariant;
using ruvector::RowMatrixXf;
using ruvector::RowMatrixXi64;

std::vector<Backend> supported_backends() {
  std::vector<Backend> out;
  for (Backend b : {Backend::Scalar, Backend::Avx2, Backend::Avx512, Backend::Neon})
    if (ruvector::backend_supported(b)) out.push_back(b);
  return out;
}

RowMatrixXi64 random_edges(std::int64_t n, std::int64_t e, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::int64_t> node(0, n - 1);
  RowMatrixXi64 edges(e, 2);
  for (Eigen::Index i = 0; i < edges.size(); ++i) edges.data()[i] = node(gen);
  return edges;
}

RowMatrixXf random_matrix(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  RowMatrixXf m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
  return m;
}

struct Reference {
  Eigen::MatrixXd values;
  Eigen::MatrixXd alpha;  // [E', H]
  std::vector<std::pair<std::int64_t, std::int64_t>> edges;
};

double leaky(double v, double slope) {
  return v > 0 ? v : slope * v;
}

// PyG's GATConv / GATv2Conv written out in double precision (self-loops removed and added,
// self-loop edge features = mean of incoming ones).
Reference reference(const RowMatrixXf& x, const RowMatrixXi64& given, const RowMatrixXf* edge_attr,
                    const ruvector::StateDict& weights, int heads, int channels, const GraphConfig& o) {
  std::map<std::string, RowMatrixXf> w;  // [H, C] for [1, H, C], [1, n] for [n], [out, in]
  for (const auto& [name, p] : weights) w[name] = p.data;
  const Eigen::Index n = x.rows(), hc = heads * channels;
  Reference r;
  std::vector<Eigen::VectorXd> attrs;
  for (Eigen::Index e = 0; e < given.rows(); ++e) {
    if (o.add_self_loops && given(e, 0) == given(e, 1)) continue;
    r.edges.emplace_back(given(e, 0), given(e, 1));
    if (edge_attr) attrs.push_back(edge_attr->row(e).cast<double>().transpose());
  }
  if (o.add_self_loops) {
    const std::size_t ordinary = r.edges.size();
    for (Eigen::Index i = 0; i < n; ++i) {
      r.edges.emplace_back(i, i);
      if (edge_attr) {
        Eigen::VectorXd mean = Eigen::VectorXd::Zero(edge_attr->cols());
        int count = 0;
        for (std::size_t e = 0; e < ordinary; ++e)
          if (r.edges[e].second == i) {
            mean += attrs[e];
            ++count;
          }
        attrs.push_back(count ? Eigen::VectorXd(mean / count) : mean);
      }
    }
  }
  const auto dx = x.cast<double>();
  const bool v2 = o.variant == GraphVariant::GatV2;
  Eigen::MatrixXd xs = dx * w.at(v2 ? "lin_l.weight" : "lin.weight").cast<double>().transpose();
  Eigen::MatrixXd xd;
  if (v2) {
    xd = dx * w.at("lin_r.weight").cast<double>().transpose();
    xs.rowwise() += w.at("lin_l.bias").cast<double>().row(0);
    xd.rowwise() += w.at("lin_r.bias").cast<double>().row(0);
  }
  const std::size_t m = r.edges.size();
  Eigen::MatrixXd score(m, heads);
  for (std::size_t e = 0; e < m; ++e) {
    const auto [j, i] = r.edges[e];
    Eigen::VectorXd ep;
    if (edge_attr) ep = w.at("lin_edge.weight").cast<double>() * attrs[e];
    for (int h = 0; h < heads; ++h) {
      double s = 0;
      for (int c = 0; c < channels; ++c) {
        const Eigen::Index k = h * channels + c;
        if (v2) {
          s += w.at("att")(h, c) * leaky(xs(j, k) + xd(i, k) + (edge_attr ? ep(k) : 0.0), o.negative_slope);
        } else {
          s += xs(j, k) * w.at("att_src")(h, c) + xs(i, k) * w.at("att_dst")(h, c);
          if (edge_attr) s += ep(k) * w.at("att_edge")(h, c);
        }
      }
      score(static_cast<Eigen::Index>(e), h) = v2 ? s : leaky(s, o.negative_slope);
    }
  }
  r.alpha = Eigen::MatrixXd::Zero(m, heads);
  Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(n, hc);
  for (Eigen::Index i = 0; i < n; ++i)
    for (int h = 0; h < heads; ++h) {
      double mx = -INFINITY, sum = 0;
      for (std::size_t e = 0; e < m; ++e)
        if (r.edges[e].second == i) mx = std::max(mx, score(static_cast<Eigen::Index>(e), h));
      for (std::size_t e = 0; e < m; ++e)
        if (r.edges[e].second == i) sum += std::exp(score(static_cast<Eigen::Index>(e), h) - mx);
      for (std::size_t e = 0; e < m; ++e)
        if (r.edges[e].second == i) {
          const double a = std::exp(score(static_cast<Eigen::Index>(e), h) - mx) / sum;
          r.alpha(static_cast<Eigen::Index>(e), h) = a;
          acc.row(i).segment(h * channels, channels) += a * xs.row(r.edges[e].first).segment(h * channels, channels);
        }
    }
  if (o.concat) {
    r.values = acc;
  } else {
    r.values = Eigen::MatrixXd::Zero(n, channels);
    for (int h = 0; h < heads; ++h) r.values += acc.middleCols(h * channels, channels) / heads;
  }
  if (w.count("bias")) r.values.rowwise() += w.at("bias").cast<double>().row(0);
  return r;
}

void expect_matches(const ruvector::AttentionOutput& out, const Reference& r) {
  ASSERT_EQ(out.values.rows(), r.values.rows());
  ASSERT_EQ(out.values.cols(), r.values.cols());
  EXPECT_LT((out.values.cast<double>() - r.values).cwiseAbs().maxCoeff(), 5e-5);
  ASSERT_EQ(out.weights.rows(), static_cast<Eigen::Index>(r.edges.size()));
  EXPECT_LT((out.weights.cast<double>() - r.alpha).cwiseAbs().maxCoeff(), 5e-6);
  const auto& edges = std::get<RowMatrixXi64>(out.metadata.at("edges"));
  for (std::size_t e = 0; e < r.edges.size(); ++e) {
    EXPECT_EQ(edges(static_cast<Eigen::Index>(e), 0), r.edges[e].first);
    EXPECT_EQ(edges(static_cast<Eigen::Index>(e), 1), r.edges[e].second);
  }
}

class BackendGuard {
 public:
  explicit BackendGuard(Backend b) { ruvector::set_simd_backend(ruvector::backend_name(b)); }
  ~BackendGuard() { ruvector::set_simd_backend("auto"); }
};

TEST(GraphStructure, CsrByTargetKeepsOrderAndSplitsSelfLoops) {
  RowMatrixXi64 edges(6, 2);
  edges << 0, 2, 1, 1, 3, 2, 2, 0, 1, 2, 1, 1;
  RowMatrixXf feats(6, 2);
  feats << 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12;
  const GraphStructure g(edges, 4, feats);
  const auto& csr = g.csr();
  EXPECT_EQ(g.num_nodes(), 4);
  EXPECT_EQ(g.num_edges(), 6);
  EXPECT_TRUE(g.has_self_loops());
  EXPECT_EQ(csr.num_self_loops, 2);
  EXPECT_EQ(csr.indptr, (std::vector<std::int64_t>{0, 1, 1, 4, 4}));
  EXPECT_EQ(csr.source, (std::vector<std::int64_t>{2, 0, 3, 1}));
  EXPECT_EQ(csr.edge_id, (std::vector<std::int64_t>{3, 0, 2, 4}));
  EXPECT_EQ(csr.kept_rank, (std::vector<std::int64_t>{2, 0, 1, 3}));  // rank without the loops
  EXPECT_EQ(csr.loop_edge_id, (std::vector<std::int64_t>{1, 5}));
  EXPECT_EQ(g.edges(), edges);
  // self-loop features: mean of incoming ordinary edge features (node 2: edges 0, 2, 4)
  EXPECT_FLOAT_EQ(g.self_loop_features()(2, 0), 5.0f);
  EXPECT_FLOAT_EQ(g.self_loop_features()(2, 1), 6.0f);
  EXPECT_FLOAT_EQ(g.self_loop_features()(0, 0), 7.0f);
  EXPECT_FLOAT_EQ(g.self_loop_features()(1, 0), 0.0f);  // only a self-loop: zeros
  const auto from_index = GraphStructure::from_edge_index(edges.transpose(), 4);
  EXPECT_EQ(from_index.edges(), edges);
}

TEST(GraphStructure, TypedErrors) {
  RowMatrixXi64 edges(2, 2);
  edges << 0, 1, 1, 5;
  try {
    GraphStructure g(edges, 3);
    FAIL() << "expected InvalidInput";
  } catch (const ruvector::InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("edge 1 has target 5"), std::string::npos);
  }
  edges(1, 1) = -2;
  EXPECT_THROW(GraphStructure(edges, 3), ruvector::InvalidInput);
  EXPECT_THROW(GraphStructure(random_edges(3, 2, 1), -1), ruvector::InvalidInput);
  EXPECT_THROW(GraphStructure(RowMatrixXi64::Zero(2, 3), 3), ruvector::DimensionMismatch);
  EXPECT_THROW(GraphStructure::from_edge_index(RowMatrixXi64::Zero(3, 2), 3), ruvector::DimensionMismatch);
  EXPECT_THROW(GraphStructure(random_edges(3, 4, 1), 3, RowMatrixXf::Zero(3, 2)), ruvector::DimensionMismatch);
  // A 0×0 feature matrix is "no features", as the header says (and so is [E, 0]: no columns).
  EXPECT_FALSE(GraphStructure(random_edges(3, 4, 1), 3, RowMatrixXf(0, 0)).has_edge_features());
  EXPECT_FALSE(GraphStructure(random_edges(3, 4, 1), 3, RowMatrixXf(4, 0)).has_edge_features());
  // The raw-pointer form: null indices, overlapping feature rows, widths and counts too large
  // are refused before anything is read or allocated.
  const std::int64_t idx[2] = {0, 1};
  const float feat[4] = {1, 2, 3, 4};
  EXPECT_THROW(GraphStructure::from_arrays(nullptr, 1, nullptr, 1, 2, 3, nullptr, 0, 0), ruvector::InvalidInput);
  EXPECT_EQ(GraphStructure::from_arrays(nullptr, 1, nullptr, 1, 0, 3, nullptr, 0, 0).num_edges(), 0);
  EXPECT_THROW(GraphStructure::from_arrays(idx, 1, idx + 1, 1, 1, 3, feat, 4, 2), ruvector::InvalidInput);
  EXPECT_THROW(
      GraphStructure::from_arrays(idx, 1, idx + 1, 1, 1, 3, feat, std::int64_t{1} << 50, std::int64_t{1} << 50),
      ruvector::InvalidInput);
  try {
    GraphStructure(random_edges(3, 2, 1), std::numeric_limits<std::int64_t>::max());
    FAIL() << "expected InvalidInput";
  } catch (const ruvector::InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("num_nodes 9223372036854775807 is too large"), std::string::npos) << e.what();
  }
}

TEST(GraphAttention, MatchesReferenceOnEveryBackend) {
  const RowMatrixXf x = random_matrix(23, 7, 3);
  RowMatrixXi64 edges = random_edges(23, 90, 4);
  edges.row(0) << 5, 5;         // a self-loop
  edges.row(1) = edges.row(2);  // a duplicate
  const RowMatrixXf attr = random_matrix(90, 3, 5);
  for (Backend b : supported_backends()) {
    BackendGuard guard(b);
    for (GraphVariant variant : {GraphVariant::Gat, GraphVariant::GatV2})
      for (bool concat : {true, false})
        for (bool loops : {true, false})
          for (bool with_attr : {false, true}) {
            SCOPED_TRACE(std::string(ruvector::backend_name(b)) + (variant == GraphVariant::Gat ? " gat" : " gatv2") +
                         (concat ? " concat" : " mean") + (loops ? " +loops" : "") + (with_attr ? " +attr" : ""));
            ruvector::AttentionConfig c;
            c.num_heads = 3;
            c.head_dim = 16;
            GraphConfig o;
            o.variant = variant;
            o.concat = concat;
            o.add_self_loops = loops;
            o.negative_slope = 0.25;
            if (with_attr) o.edge_dim = 3;
            const GraphAttention layer(c, o);
            const GraphStructure g = with_attr ? GraphStructure(edges, 23, attr) : GraphStructure(edges, 23);
            const auto out = layer.compute(x, g);
            expect_matches(out, reference(x, edges, with_attr ? &attr : nullptr, layer.get_weights(), 3, 16, o));
            EXPECT_EQ(std::get<std::string>(out.metadata.at("attention_type")), "graph");
            ruvector::GraphOptions values_only;
            values_only.need_weights = false;
            const auto streamed = layer.compute(x, g, values_only);
            EXPECT_FALSE(streamed.has_weights());
            EXPECT_EQ(streamed.metadata.count("edges"), 0u);
            EXPECT_LT((streamed.values - out.values).cwiseAbs().maxCoeff(), 1e-6f);
          }
  }
}

TEST(GraphAttention, GraphKernelsAreTheBackends) {
  for (Backend b : supported_backends()) {
    BackendGuard guard(b);
    EXPECT_EQ(std::string(ruvector::simd::active_kernels().name), ruvector::backend_name(b));
    EXPECT_EQ(ruvector::simd::active_kernels().graph.gat, ruvector::simd::built_kernels(b)->graph.gat);
  }
}

TEST(GraphAttention, TypedErrorsAndLazyWeights) {
  ruvector::AttentionConfig c;
  c.num_heads = 2;
  c.head_dim = 4;
  GraphAttention layer(c);
  EXPECT_FALSE(layer.in_features().has_value());
  EXPECT_TRUE(layer.get_weights().empty());
  const GraphStructure g(random_edges(5, 8, 1), 5);
  layer.compute(random_matrix(5, 6, 1), g);
  EXPECT_EQ(layer.in_features().value(), 6);
  try {
    layer.compute(random_matrix(5, 4, 1), g);
    FAIL() << "expected DimensionMismatch";
  } catch (const ruvector::DimensionMismatch& e) {
    EXPECT_EQ(e.expected(), 6);
    EXPECT_EQ(e.actual(), 4);
  }
  EXPECT_THROW(layer.compute(random_matrix(4, 6, 1), g), ruvector::DimensionMismatch);
  EXPECT_THROW(layer.compute(random_matrix(5, 6, 1), GraphStructure(random_edges(5, 8, 1), 5, random_matrix(8, 2, 1))),
               ruvector::InvalidInput);

  auto weights = layer.get_weights();  // PyG's names and shapes
  EXPECT_EQ(weights.at("att_src").shape, (std::vector<ruvector::Index>{1, 2, 4}));
  EXPECT_EQ(weights.at("bias").shape, (std::vector<ruvector::Index>{8}));
  EXPECT_EQ(weights.at("lin.weight").shape, (std::vector<ruvector::Index>{8, 6}));
  weights["att_src"].data(1, 2) = 7.0f;
  layer.set_weights({{"att_src", weights["att_src"]}});
  EXPECT_EQ(layer.get_weights().at("att_src").data(1, 2), 7.0f);
  EXPECT_THROW(layer.set_weights({{"att", weights["att_src"]}}), ruvector::InvalidInput);
  EXPECT_THROW(layer.set_weights({{"att_src", ruvector::Parameter{{1, 2, 5}, RowMatrixXf::Zero(2, 5)}},
                                  {"bias", ruvector::Parameter{{8}, RowMatrixXf::Zero(1, 8)}}}),
               ruvector::DimensionMismatch);
  try {  // the right shape, but data that does not hold it
    layer.set_weights({{"bias", ruvector::Parameter{{8}, RowMatrixXf::Zero(1, 7)}}});
    FAIL() << "expected InvalidInput";
  } catch (const ruvector::DimensionMismatch&) {
    FAIL() << "expected InvalidInput about the data, not the shape";
  } catch (const ruvector::InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("holds 7 numbers"), std::string::npos) << e.what();
  }
  EXPECT_EQ(layer.get_weights().at("att_src").data(1, 2), 7.0f);  // unchanged by the rejected calls
  EXPECT_EQ(layer.get_weights().at("bias").data, weights.at("bias").data);

  GraphConfig bad;
  bad.edge_dim = 0;
  EXPECT_THROW(GraphAttention(c, bad), ruvector::InvalidConfig);
  bad = {};
  bad.negative_slope = NAN;
  EXPECT_THROW(GraphAttention(c, bad), ruvector::InvalidConfig);
  bad = {};
  bad.in_features = -3;
  EXPECT_THROW(GraphAttention(c, bad), ruvector::InvalidConfig);
  try {  // a second initialize with another width names initialize, not node features
    layer.initialize(7);
    FAIL() << "expected InvalidConfig";
  } catch (const ruvector::InvalidConfig& e) {
    EXPECT_NE(std::string(e.what()).find("in_features is already 6"), std::string::npos) << e.what();
  }
  layer.initialize(6);  // the same width: nothing to do
}

TEST(GraphAttention, CopiesShareNothingMutable) {
  ruvector::AttentionConfig c;
  c.num_heads = 1;
  c.head_dim = 2;
  GraphConfig o;
  o.in_features = 3;
  GraphAttention a(c, o);
  GraphAttention b = a;
  auto w = a.get_weights();
  w["bias"].data.setConstant(1.0f);
  b.set_weights({{"bias", w["bias"]}});
  EXPECT_EQ(a.get_weights().at("bias").data(0, 0), 0.0f);
  EXPECT_EQ(b.get_weights().at("bias").data(0, 0), 1.0f);
}

}  // namespace

namespace {

TEST(GraphAttention, TargetsAreRowsOfTheFullCallOnEveryBackend) {
  const RowMatrixXf x = random_matrix(40, 6, 7);
  RowMatrixXi64 edges = random_edges(40, 150, 8);
  edges.row(0) << 3, 3;  // a self-loop
  const RowMatrixXf attr = random_matrix(150, 2, 9);
  for (Backend b : supported_backends()) {
    BackendGuard guard(b);
    for (GraphVariant variant : {GraphVariant::Gat, GraphVariant::GatV2})
      for (bool loops : {true, false}) {
        SCOPED_TRACE(std::string(ruvector::backend_name(b)) + (variant == GraphVariant::Gat ? " gat" : " gatv2") +
                     (loops ? " +loops" : ""));
        ruvector::AttentionConfig c;
        c.num_heads = 2;
        c.head_dim = 5;
        GraphConfig o;
        o.variant = variant;
        o.add_self_loops = loops;
        o.edge_dim = 2;
        o.residual = true;
        o.fill_mode = ruvector::FillMode::Max;
        const GraphAttention layer(c, o);
        const GraphStructure g(edges, 40, attr);
        const auto full = layer.compute(x, g);
        ruvector::GraphOptions some;
        some.has_targets = true;
        some.targets = {39, 3, 0, 3};
        const auto part = layer.compute(x, g, some);
        ASSERT_EQ(part.values.rows(), 4);
        for (Eigen::Index k = 0; k < 4; ++k)
          EXPECT_EQ(part.values.row(k), full.values.row(some.targets[static_cast<std::size_t>(k)]));
        some.targets = {40};
        EXPECT_THROW(layer.compute(x, g, some), ruvector::InvalidInput);
      }
  }
}

TEST(GraphAttention, BipartiteAddsLoopsBelowTheSmallerSide) {
  RowMatrixXi64 edges(3, 2);
  edges << 1, 1, 2, 4, 0, 1;
  const GraphStructure g =
      GraphStructure::from_arrays(edges.data(), 2, edges.data() + 1, 2, 3, 5, nullptr, 0, 0, /*num_sources=*/3);
  EXPECT_EQ(g.num_sources(), 3);
  EXPECT_EQ(g.num_nodes(), 5);
  EXPECT_TRUE(g.bipartite());
  ruvector::AttentionConfig c;
  c.num_heads = 1;
  c.head_dim = 2;
  const GraphAttention layer(c, GraphConfig{});
  const RowMatrixXf xs = random_matrix(3, 4, 1), xd = random_matrix(5, 4, 2);
  const auto out = layer.compute(xs, xd, g);
  EXPECT_EQ(out.values.rows(), 5);
  const auto& used = std::get<RowMatrixXi64>(out.metadata.at("edges"));
  RowMatrixXi64 expected(5, 2);
  expected << 2, 4, 0, 1, 0, 0, 1, 1, 2, 2;
  EXPECT_EQ(used, expected);
  EXPECT_THROW(layer.compute(xs, g), ruvector::InvalidInput);  // a bipartite graph needs (x_src, x_dst)
}

}  // namespace
