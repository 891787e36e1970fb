// The C++ API of DotProductAttention (docs/contract.md §7): Eigen in, AttentionOutput out, typed errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "memory/memory.hpp"
#include "ruvector/ruvector.hpp"

namespace {

using ruvector::RowMatrixXf;

TEST(DotProduct, MatchesEigenReference) {
  const RowMatrixXf q = RowMatrixXf::Random(37, 24), k = RowMatrixXf::Random(53, 24), v = RowMatrixXf::Random(53, 10);
  ruvector::DotProductAttention attn;
  const auto out = attn.compute(q, k, v);
  Eigen::MatrixXd s = (q.cast<double>() * k.cast<double>().transpose()) / std::sqrt(24.0);
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    s.row(i) = (s.row(i).array() - s.row(i).maxCoeff()).exp();
    s.row(i) /= s.row(i).sum();
  }
  const Eigen::MatrixXd ref = s * v.cast<double>();
  EXPECT_LT((out.values.cast<double>() - ref).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LT((out.weights.cast<double>() - s).cwiseAbs().maxCoeff(), 1e-6);
  EXPECT_EQ(std::get<std::string>(out.metadata.at("attention_type")), "dot_product");
}

TEST(DotProduct, StridedInputsAndMasks) {
  const RowMatrixXf big = RowMatrixXf::Random(20, 40);
  ruvector::RowMatrixXb mask = ruvector::RowMatrixXb::Constant(20, 20, true);
  mask(3, 4) = false;
  ruvector::DotProductOptions opt;
  opt.mask = ruvector::AttentionMask::from_bool(mask);
  ruvector::DotProductAttention attn;
  const auto out = attn.compute(big.leftCols(8), big.middleCols(8, 8), big.rightCols(5), opt);
  EXPECT_EQ(out.values.rows(), 20);
  EXPECT_EQ(out.values.cols(), 5);
  EXPECT_EQ(out.weights(3, 4), 0.0f);
  EXPECT_NEAR(out.weights.row(3).sum(), 1.0f, 1e-5);
}

TEST(DotProduct, TypedErrors) {
  ruvector::DotProductAttention attn;
  const RowMatrixXf q = RowMatrixXf::Random(4, 3), k = RowMatrixXf::Random(5, 4), v = RowMatrixXf::Random(5, 2);
  try {
    attn.compute(q, k, v);
    FAIL() << "expected DimensionMismatch";
  } catch (const ruvector::DimensionMismatch& e) {
    EXPECT_EQ(e.expected(), 3);
    EXPECT_EQ(e.actual(), 4);
    EXPECT_NE(std::string(e.what()).find("key has 4 columns, query has 3"), std::string::npos);
  }
  EXPECT_THROW(attn.compute(k, k, q), ruvector::DimensionMismatch);
  ruvector::AttentionConfig bad;
  bad.dropout = 1.0;
  EXPECT_THROW(ruvector::DotProductAttention{bad}, ruvector::InvalidConfig);

  // Masks that cannot be read are refused, never ignored (the call would run unmasked).
  const RowMatrixXf q2 = RowMatrixXf::Random(2, 4), k3 = RowMatrixXf::Random(3, 4), v3 = RowMatrixXf::Random(3, 5);
  ruvector::DotProductOptions opt;
  opt.mask = ruvector::AttentionMask::from_bool(static_cast<const bool*>(nullptr), 2, 3, 3);
  EXPECT_THROW(attn.compute(q2, k3, v3, opt), ruvector::InvalidInput);
  const bool allowed[6] = {true, false, true, true, true, false};
  opt.mask = ruvector::AttentionMask::from_bool(allowed, 2, 3, 2);  // stride < cols: rows overlap
  EXPECT_THROW(attn.compute(q2, k3, v3, opt), ruvector::InvalidInput);
  opt.mask = ruvector::AttentionMask::from_bool(allowed, 2, 3, 3);
  opt.mask.kind = static_cast<ruvector::AttentionMask::Kind>(7);
  EXPECT_THROW(attn.compute(q2, k3, v3, opt), ruvector::InvalidInput);
  opt.mask.kind = ruvector::AttentionMask::Kind::Additive;  // additive, but only the boolean data set
  EXPECT_THROW(attn.compute(q2, k3, v3, opt), ruvector::InvalidInput);
  EXPECT_THROW(ruvector::memory::output_matrix(-1, 3), ruvector::InvalidInput);
}

}  // namespace
