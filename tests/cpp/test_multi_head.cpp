// The C++ API of MultiHeadAttention (docs/contract.md §7): torch-named weights, Eigen in, typed errors.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ruvector/ruvector.hpp"

namespace {

using ruvector::Index;
using ruvector::RowMatrixXf;
using Md = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Md softmax_rows(Md s) {
  for (Index i = 0; i < s.rows(); ++i) {
    s.row(i) = (s.row(i).array() - s.row(i).maxCoeff()).exp();
    s.row(i) /= s.row(i).sum();
  }
  return s;
}

ruvector::Parameter param(std::vector<Index> shape, const RowMatrixXf& m) {
  return {std::move(shape), m};
}

// Independent float64 reference: projections, per-head softmax attention, out-projection.
struct Reference {
  Md wq, wk, wv, wo;
  Eigen::RowVectorXd bq, bk, bv, bo;
  int heads;
  Md values, weights;  // weights: head average

  void run(const RowMatrixXf& q, const RowMatrixXf& k, const RowMatrixXf& v) {
    const Md qp = (q.cast<double>() * wq.transpose()).rowwise() + bq;
    const Md kp = (k.cast<double>() * wk.transpose()).rowwise() + bk;
    const Md vp = (v.cast<double>() * wv.transpose()).rowwise() + bv;
    const Index e = wq.rows(), hd = e / heads;
    Md ctx(q.rows(), e);
    weights = Md::Zero(q.rows(), k.rows());
    for (int h = 0; h < heads; ++h) {
      const Md p = softmax_rows(qp.middleCols(h * hd, hd) * kp.middleCols(h * hd, hd).transpose() /
                                std::sqrt(static_cast<double>(hd)));
      ctx.middleCols(h * hd, hd) = p * vp.middleCols(h * hd, hd);
      weights += p / heads;
    }
    values = (ctx * wo.transpose()).rowwise() + bo;
  }
};

// Random weights (biases too) for H heads, width e, key width kdim, value width vdim.
Reference random_reference(int heads, Index e, Index kdim, Index vdim) {
  Reference r;
  r.wq = Md::Random(e, e);
  r.wk = Md::Random(e, kdim);
  r.wv = Md::Random(e, vdim);
  r.wo = Md::Random(e, e);
  r.bq = Eigen::RowVectorXd::Random(e);
  r.bk = Eigen::RowVectorXd::Random(e);
  r.bv = Eigen::RowVectorXd::Random(e);
  r.bo = Eigen::RowVectorXd::Random(e);
  r.heads = heads;
  return r;
}

TEST(MultiHead, DefaultIsSplitHeadsAttention) {
  ruvector::AttentionConfig c;
  c.num_heads = 2;
  c.head_dim = 4;
  ruvector::MultiHeadAttention mha(c);
  EXPECT_EQ(mha.embed_dim(), 8);
  const RowMatrixXf q = RowMatrixXf::Random(5, 8), k = RowMatrixXf::Random(7, 8), v = RowMatrixXf::Random(7, 8);
  Reference ref = random_reference(2, 8, 8, 8);
  ref.wq = ref.wk = ref.wv = ref.wo = Md::Identity(8, 8);
  ref.bq = ref.bk = ref.bv = ref.bo = Eigen::RowVectorXd::Zero(8);
  ref.run(q, k, v);
  const auto out = mha.compute(q, k, v);
  EXPECT_LT((out.values.cast<double>() - ref.values).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LT((out.weights.cast<double>() - ref.weights).cwiseAbs().maxCoeff(), 1e-6);
  EXPECT_EQ(std::get<std::string>(out.metadata.at("attention_type")), "multi_head");
  EXPECT_EQ(std::get<std::int64_t>(out.metadata.at("num_heads")), 2);
  EXPECT_EQ(std::get<std::int64_t>(out.metadata.at("head_dim")), 4);
}

TEST(MultiHead, SeparateWeightsMatchReference) {
  ruvector::AttentionConfig c;
  c.num_heads = 3;
  ruvector::MultiHeadAttention mha(c, 12, 5, 7);
  EXPECT_FALSE(mha.packed());
  Reference ref = random_reference(3, 12, 5, 7);
  RowMatrixXf in_bias(1, 36);
  in_bias << ref.bq.cast<float>(), ref.bk.cast<float>(), ref.bv.cast<float>();
  ruvector::StateDict d{{"q_proj_weight", param({12, 12}, ref.wq.cast<float>())},
                        {"k_proj_weight", param({12, 5}, ref.wk.cast<float>())},
                        {"v_proj_weight", param({12, 7}, ref.wv.cast<float>())},
                        {"in_proj_bias", param({36}, in_bias)},
                        {"out_proj.weight", param({12, 12}, ref.wo.cast<float>())},
                        {"out_proj.bias", param({12}, ref.bo.cast<float>())}};
  mha.set_weights(d);
  const RowMatrixXf q = RowMatrixXf::Random(9, 12), k = RowMatrixXf::Random(11, 5), v = RowMatrixXf::Random(11, 7);
  ref.run(q, k, v);
  const auto out = mha.compute(q, k, v);
  EXPECT_LT((out.values.cast<double>() - ref.values).cwiseAbs().maxCoeff(), 1e-4);
  EXPECT_LT((out.weights.cast<double>() - ref.weights).cwiseAbs().maxCoeff(), 1e-5);

  // get_weights gives back what was set, under the same names and shapes
  const auto back = mha.get_weights();
  ASSERT_EQ(back.size(), d.size());
  for (const auto& [name, p] : d) {
    EXPECT_EQ(back.at(name).shape, p.shape) << name;
    EXPECT_EQ((back.at(name).data - p.data).cwiseAbs().maxCoeff(), 0.0f) << name;
  }
}

TEST(MultiHead, PackedSelfAttentionAndPerHeadWeights) {
  ruvector::AttentionConfig c;
  c.num_heads = 4;
  ruvector::MultiHeadAttention mha(c, 16);
  Reference ref = random_reference(4, 16, 16, 16);
  RowMatrixXf in_proj(48, 16), in_bias(1, 48);
  in_proj << ref.wq.cast<float>(), ref.wk.cast<float>(), ref.wv.cast<float>();
  in_bias << ref.bq.cast<float>(), ref.bk.cast<float>(), ref.bv.cast<float>();
  mha.set_weights({{"in_proj_weight", param({48, 16}, in_proj)},
                   {"in_proj_bias", param({48}, in_bias)},
                   {"out_proj.weight", param({16, 16}, ref.wo.cast<float>())},
                   {"out_proj.bias", param({16}, ref.bo.cast<float>())}});
  const RowMatrixXf x = RowMatrixXf::Random(130, 16);
  ref.run(x, x, x);
  ruvector::MultiHeadOptions opt;
  opt.average_weights = false;
  const auto out = mha.compute(x, x, x, opt);  // one fused in-projection GEMM
  EXPECT_LT((out.values.cast<double>() - ref.values).cwiseAbs().maxCoeff(), 1e-4);
  ASSERT_EQ(out.weights_shape, (std::vector<Index>{4, 130, 130}));
  Md mean = Md::Zero(130, 130);
  for (int h = 0; h < 4; ++h) mean += out.weights.middleRows(h * 130, 130).cast<double>() / 4;
  EXPECT_LT((mean - ref.weights).cwiseAbs().maxCoeff(), 1e-5);
  const RowMatrixXf other = RowMatrixXf::Random(20, 16);
  ref.run(x.topRows(7), other, other);  // key == value: one GEMM for both
  const auto kv = mha.compute(x.topRows(7), other, other);
  EXPECT_LT((kv.values.cast<double>() - ref.values).cwiseAbs().maxCoeff(), 1e-4);
}

TEST(MultiHead, RejectedSetWeightsLeavesLayerUnchanged) {
  ruvector::AttentionConfig c;
  c.num_heads = 2;
  c.head_dim = 2;
  ruvector::MultiHeadAttention mha(c);
  const auto before = mha.get_weights();
  auto d = before;
  d["out_proj.weight"].data.setConstant(3.0f);
  d["in_proj_bias"] = param({4}, RowMatrixXf::Ones(1, 4));  // wrong: [12]
  try {
    mha.set_weights(d);
    FAIL() << "expected InvalidInput";
  } catch (const ruvector::InvalidInput& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("in_proj_bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[12]"), std::string::npos) << msg;
  }
  EXPECT_EQ(mha.get_weights().at("out_proj.weight").data, before.at("out_proj.weight").data);
  d = before;
  d.erase("out_proj.bias");
  EXPECT_THROW(mha.set_weights(d), ruvector::InvalidInput);
  d = before;
  d["q_proj_weight"] = param({4, 4}, RowMatrixXf::Ones(4, 4));
  EXPECT_THROW(mha.set_weights(d), ruvector::InvalidInput);
}

TEST(MultiHead, TypedErrors) {
  ruvector::AttentionConfig c;
  c.num_heads = 3;
  EXPECT_THROW(ruvector::MultiHeadAttention(c, 10), ruvector::InvalidConfig);
  EXPECT_THROW(ruvector::MultiHeadAttention(c, 0), ruvector::InvalidConfig);
  EXPECT_THROW(ruvector::MultiHeadAttention(c, 6, -1), ruvector::InvalidConfig);
  ruvector::MultiHeadAttention mha(c, 6, 4);
  const RowMatrixXf q = RowMatrixXf::Random(3, 6), k = RowMatrixXf::Random(5, 4), v = RowMatrixXf::Random(5, 6);
  EXPECT_NO_THROW(mha.compute(q, k, v));
  try {
    mha.compute(q, q, v);
    FAIL() << "expected DimensionMismatch";
  } catch (const ruvector::DimensionMismatch& e) {
    EXPECT_EQ(e.expected(), 4);
    EXPECT_EQ(e.actual(), 6);
    EXPECT_NE(std::string(e.what()).find("kdim"), std::string::npos);
  }
  EXPECT_THROW(mha.compute(k, k, v), ruvector::DimensionMismatch);
  EXPECT_THROW(mha.compute(q, k, v.topRows(4)), ruvector::DimensionMismatch);
}

TEST(MultiHead, ConcurrentComputeAndSetWeights) {
  ruvector::AttentionConfig c;
  c.num_heads = 2;
  c.head_dim = 8;
  ruvector::MultiHeadAttention mha(c);
  const RowMatrixXf x = RowMatrixXf::Random(40, 16);
  const auto identity = mha.compute(x, x, x).values;
  auto scaled = mha.get_weights();
  scaled["out_proj.weight"].data *= 2.0f;
  const auto base = mha.get_weights();
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) mha.set_weights(i % 2 ? base : scaled);
  });
  for (int i = 0; i < 200; ++i) {
    const auto v = mha.compute(x, x, x).values;
    const float d1 = (v - identity).cwiseAbs().maxCoeff(), d2 = (v - 2.0f * identity).cwiseAbs().maxCoeff();
    EXPECT_TRUE(d1 < 1e-5f || d2 < 1e-5f);  // one snapshot or the other, never a mix
  }
  writer.join();
}

// An untrained layer with add_bias_kv and add_zero_attn is split-heads attention over the keys
// plus bias_k (zeros by default) and a zero key: both score 0, and the zero values add nothing.
// key_padding_mask (true = ignore) matches a boolean mask that blocks the same keys in every row.
TEST(MultiHead, AddedKeysAndKeyPadding) {
  ruvector::AttentionConfig c;
  c.num_heads = 2;
  c.head_dim = 4;
  ruvector::MultiHeadAttention mha(c, std::nullopt, std::nullopt, std::nullopt, true, true);
  EXPECT_EQ(mha.added_keys(), 2);
  const RowMatrixXf q = RowMatrixXf::Random(5, 8), k = RowMatrixXf::Random(7, 8), v = RowMatrixXf::Random(7, 8);
  Md weights = Md::Zero(5, 9), values = Md::Zero(5, 8);
  for (int h = 0; h < 2; ++h) {
    Md s = Md::Zero(5, 9);
    s.leftCols(7) = q.cast<double>().middleCols(h * 4, 4) * k.cast<double>().middleCols(h * 4, 4).transpose() / 2.0;
    const Md p = softmax_rows(s);
    weights += p / 2.0;
    values.middleCols(h * 4, 4) = p.leftCols(7) * v.cast<double>().middleCols(h * 4, 4);
  }
  auto out = mha.compute(q, k, v);
  ASSERT_EQ(out.weights.cols(), 9);
  EXPECT_LT((out.values.cast<double>() - values).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LT((out.weights.cast<double>() - weights).cwiseAbs().maxCoeff(), 1e-6);

  ruvector::MultiHeadAttention plain(c);
  const bool ignore[7] = {false, true, false, false, true, true, false};
  ruvector::RowMatrixXb allowed(5, 7);
  for (Index j = 0; j < 7; ++j) allowed.col(j).setConstant(!ignore[j]);
  ruvector::MultiHeadOptions padded, masked;
  padded.key_padding_mask = ruvector::KeyPaddingMask::from_bool(ignore, 7);
  masked.mask = ruvector::AttentionMask::from_bool(allowed);
  for (bool causal : {false, true}) {
    padded.causal = masked.causal = causal;
    const auto a = plain.compute(q, k, v, padded), b = plain.compute(q, k, v, masked);
    EXPECT_LT((a.values - b.values).cwiseAbs().maxCoeff(), 1e-6);
    EXPECT_LT((a.weights - b.weights).cwiseAbs().maxCoeff(), 1e-7);
  }
  padded.key_padding_mask = ruvector::KeyPaddingMask::from_bool(ignore, 6);
  EXPECT_THROW(plain.compute(q, k, v, padded), ruvector::DimensionMismatch);
}

}  // namespace
