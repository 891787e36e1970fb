// HierarchicalAttention front end. Validation first; then the levels run as pool tasks, each
// cut into row chunks that run on the pool too:
//   1. (no query) chunk column sums → the level means u_l;
//   2. per chunk, with the rows still in cache: scores a = scale·X·u_l, the chunk max m_c,
//      e = exp(a − m_c) and the partial pooled row Σ e_i x_i (online softmax, as in flash
//      attention);
//   3. per level, the chunks are merged with the factors exp(m_c − m)/Σ — in chunk order, so
//      the result does not depend on the number of threads.
// All vector work goes through the active SIMD kernel table (dot, max, exp, axpy, scale).
#include "ruvector/hierarchical.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "attention_core.hpp"
#include "memory/memory.hpp"
#include "messages.hpp"
#include "ruvector/errors.hpp"
#include "thread_pool_internal.hpp"

namespace ruvector {
namespace {

// Rows per chunk: about 32 KB of floats, so the axpys of a chunk find in L1 the rows its dot
// products have just read.
constexpr Index kChunkFloats = 8192;
// Below this many input floats the call runs on the calling thread (the pool costs more).
constexpr double kParallelElements = 65536.0;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Chunk {
  Index level, row0, rows;
};

template <class Fn>
void for_each_index(std::size_t n, bool parallel, const Fn& fn) {
  if (parallel && n > 1) {
    parallel_for(n, fn);
  } else {
    for (std::size_t i = 0; i < n; ++i) fn(i);
  }
}

}  // namespace

HierarchicalAttention::HierarchicalAttention(AttentionConfig config) : config_(config) {
  config_.validate();
}

void HierarchicalAttention::validate(const std::vector<MatrixRef>& levels, const HierarchicalOptions& opt) const {
  if (levels.empty())
    throw InvalidInput("levels is empty: give at least one level, a list of [N, D] arrays or an [L, N, D] array");
  const Index l_count = static_cast<Index>(levels.size()), d = levels[0].cols();
  Index max_rows = 0;
  for (Index l = 0; l < l_count; ++l) {
    const MatrixRef& x = levels[static_cast<std::size_t>(l)];
    if (x.rows() == 0)
      throw InvalidInput("level " + std::to_string(l) +
                         " has no rows: every level needs at least one item (drop empty levels)");
    if (x.cols() != d)
      throw DimensionMismatch("level " + std::to_string(l) + " has " + std::to_string(x.cols()) +
                                  " columns, level 0 has " + std::to_string(d) +
                                  ": every level must have the same feature width D",
                              d, x.cols());
    max_rows = std::max(max_rows, x.rows());
  }
  if (opt.level_weights) {
    const std::vector<double>& w = *opt.level_weights;
    const Index n = static_cast<Index>(w.size());
    if (n != l_count)
      throw DimensionMismatch("level_weights has " + std::to_string(n) + " entries for " + std::to_string(l_count) +
                                  " levels: give one weight per level",
                              l_count, n);
    double largest = 0.0;
    for (Index l = 0; l < n; ++l) {
      const double x = w[static_cast<std::size_t>(l)];
      if (!std::isfinite(x) || x < 0.0)
        throw InvalidInput("level_weights[" + std::to_string(l) + "] is " + detail::number_str(x) +
                           ": level weights must be finite and >= 0");
      largest = std::max(largest, x);
    }
    if (largest == 0.0)
      throw InvalidInput("level_weights sum to 0: give at least one positive weight (they are normalised to sum 1)");
  }
  if (opt.query && opt.query->size() != d)
    throw DimensionMismatch("query has " + std::to_string(opt.query->size()) + " entries, the levels have " +
                                std::to_string(d) + " columns: query must be a vector [D]",
                            d, opt.query->size());
  if (opt.need_weights)
    memory::checked_elements(l_count, max_rows, "attention weights", "pass need_weights=False to skip them");
}

AttentionOutput HierarchicalAttention::compute(const std::vector<MatrixRef>& levels,
                                               const HierarchicalOptions& opt) const {
  validate(levels, opt);
  const simd::KernelTable& kt = simd::active_kernels();
  const Index l_count = static_cast<Index>(levels.size()), d = levels[0].cols();
  const std::size_t du = static_cast<std::size_t>(d);
  const float scale = static_cast<float>(config_.scale_for(d));

  Index max_rows = 0;
  double elements = 0.0;
  std::vector<Index> offset(static_cast<std::size_t>(l_count) + 1, 0);  // of each level's α in scratch
  for (Index l = 0; l < l_count; ++l) {
    const Index n = levels[static_cast<std::size_t>(l)].rows();
    max_rows = std::max(max_rows, n);
    elements += static_cast<double>(n) * static_cast<double>(d);
    offset[static_cast<std::size_t>(l) + 1] = offset[static_cast<std::size_t>(l)] + n;
  }
  const bool parallel = elements >= kParallelElements;

  const Index chunk_rows = std::max<Index>(8, kChunkFloats / std::max<Index>(d, 1));
  std::vector<Chunk> chunks;
  std::vector<std::size_t> first_chunk(static_cast<std::size_t>(l_count) + 1, 0);
  for (Index l = 0; l < l_count; ++l) {
    const Index n = levels[static_cast<std::size_t>(l)].rows();
    for (Index r0 = 0; r0 < n; r0 += chunk_rows) chunks.push_back({l, r0, std::min(chunk_rows, n - r0)});
    first_chunk[static_cast<std::size_t>(l) + 1] = chunks.size();
  }
  const auto row_of = [&](const Chunk& c, Index r) {
    return levels[static_cast<std::size_t>(c.level)].row(c.row0 + r).data();
  };

  AttentionOutput out;
  // α of each level: straight into the padded weights, or into scratch without them.
  std::vector<float> alpha_scratch;
  if (opt.need_weights) {
    out.weights = RowMatrixXf::Zero(l_count, max_rows);
    out.weights_shape = {l_count, max_rows};
  } else {
    alpha_scratch.resize(static_cast<std::size_t>(offset.back()));
  }
  const auto alpha_of = [&](Index l) {
    return opt.need_weights ? out.weights.row(l).data() : alpha_scratch.data() + offset[static_cast<std::size_t>(l)];
  };

  // One level at a time per task, so that its rows are still in cache for the second pass;
  // the chunks of a level run in parallel too (nested on the one pool), which balances
  // ragged levels.
  RowMatrixXf context(l_count, d);
  RowMatrixXf partial(static_cast<Index>(chunks.size()), d);
  RowMatrixXf summaries = RowMatrixXf::Zero(l_count, d);
  std::vector<float> chunk_max(chunks.size(), kNegInf), chunk_sum(chunks.size(), 0.0f);

  const auto pool_level = [&](std::size_t level) {
    const Index l = static_cast<Index>(level);
    const std::size_t c_begin = first_chunk[level], c_count = first_chunk[level + 1] - c_begin;
    float* u = context.row(l).data();

    // 1. Context u_l: the query, or the mean row (chunk column sums, added in order in double).
    if (opt.query) {
      context.row(l) = opt.query->transpose();
    } else {
      for_each_index(c_count, parallel, [&](std::size_t k) {
        const Chunk& c = chunks[c_begin + k];
        float* sum = partial.row(static_cast<Index>(c_begin + k)).data();
        std::fill(sum, sum + du, 0.0f);
        for (Index r = 0; r < c.rows; ++r) kt.axpy(1.0f, row_of(c, r), sum, du);
      });
      Eigen::RowVectorXd total = Eigen::RowVectorXd::Zero(d);
      for (std::size_t k = 0; k < c_count; ++k) total += partial.row(static_cast<Index>(c_begin + k)).cast<double>();
      context.row(l) = (total / static_cast<double>(levels[level].rows())).cast<float>();
    }

    // 2. Per chunk: scores, local softmax numerators e = exp(a − m_c), partial Σ e_i x_i.
    float* alpha = alpha_of(l);
    for_each_index(c_count, parallel, [&](std::size_t k) {
      const std::size_t ci = c_begin + k;
      const Chunk& c = chunks[ci];
      float* a = alpha + c.row0;
      float* acc = partial.row(static_cast<Index>(ci)).data();
      std::fill(acc, acc + du, 0.0f);
      const std::size_t n = static_cast<std::size_t>(c.rows);
      for (Index r = 0; r < c.rows; ++r) a[r] = scale * kt.dot(row_of(c, r), u, du);
      const float m = kt.max(a, n);
      if (m == kNegInf) {
        // The max kernels skip NaN: a chunk whose scores are all NaN or -inf lands here too.
        if (std::none_of(a, a + n, [](float x) { return std::isnan(x); })) {
          std::memset(a, 0, n * sizeof(float));  // all -inf (infinite features): contributes nothing
          return;
        }
        chunk_max[ci] = chunk_sum[ci] = std::numeric_limits<float>::quiet_NaN();  // NaN propagates
        return;
      }
      chunk_sum[ci] = kt.exp_shift_sum(a, n, m);
      chunk_max[ci] = m;
      for (Index r = 0; r < c.rows; ++r) kt.axpy(a[r], row_of(c, r), acc, du);
    });

    // 3. Merge the chunks in order: s_l and the normalised α_l.
    float m = kNegInf;
    bool nan = false;
    for (std::size_t ci = c_begin; ci < c_begin + c_count; ++ci) {
      nan = nan || std::isnan(chunk_max[ci]);
      m = std::max(m, chunk_max[ci]);
    }
    if (nan) m = std::numeric_limits<float>::quiet_NaN();  // NaN features propagate
    if (m == kNegInf) return;                              // nothing to attend to: zeros
    double total = 0.0;
    for (std::size_t ci = c_begin; ci < c_begin + c_count; ++ci)
      if (chunk_max[ci] != kNegInf) total += chunk_sum[ci] * std::exp(static_cast<double>(chunk_max[ci]) - m);
    float* s = summaries.row(l).data();
    for (std::size_t ci = c_begin; ci < c_begin + c_count; ++ci) {
      const Chunk& c = chunks[ci];
      if (chunk_max[ci] == kNegInf) continue;  // its α are zeros already
      const float factor = static_cast<float>(std::exp(static_cast<double>(chunk_max[ci]) - m) / total);
      kt.scale(alpha + c.row0, static_cast<std::size_t>(c.rows), factor);
      kt.axpy(factor, partial.row(static_cast<Index>(ci)).data(), s, du);
    }
  };
  for_each_index(static_cast<std::size_t>(l_count), parallel, pool_level);

  // Across levels: β, then values = βᵀS.
  std::vector<double> beta(static_cast<std::size_t>(l_count));
  if (opt.level_weights) {
    // Divided by the largest first, so that a sum of huge finite weights cannot overflow.
    const std::vector<double>& w = *opt.level_weights;
    const double largest = *std::max_element(w.begin(), w.end());
    double sum = 0.0;
    for (double x : w) sum += x / largest;
    for (std::size_t l = 0; l < w.size(); ++l) beta[l] = (w[l] / largest) / sum;
  } else {
    Eigen::VectorXf level_context(d);
    if (opt.query) {
      level_context = *opt.query;
    } else {
      level_context =
          (summaries.cast<double>().colwise().sum() / static_cast<double>(l_count)).transpose().cast<float>();
    }
    // L is small: the softmax over levels runs in double, NaN propagating as in NumPy.
    double m = -std::numeric_limits<double>::infinity();
    bool nan = false;
    for (Index l = 0; l < l_count; ++l) {
      beta[l] = static_cast<double>(scale * kt.dot(summaries.row(l).data(), level_context.data(), du));
      nan = nan || std::isnan(beta[l]);
      m = std::max(m, beta[l]);
    }
    double sum = 0.0;
    for (double& b : beta) sum += (b = nan ? std::numeric_limits<double>::quiet_NaN() : std::exp(b - m));
    for (double& b : beta) b = sum > 0.0 ? b / sum : (nan ? b : 0.0);
  }
  out.values = RowMatrixXf::Zero(1, d);
  for (Index l = 0; l < l_count; ++l)
    kt.axpy(static_cast<float>(beta[static_cast<std::size_t>(l)]), summaries.row(l).data(), out.values.data(), du);

  out.metadata["attention_type"] = std::string("hierarchical");
  out.metadata["num_levels"] = static_cast<std::int64_t>(l_count);
  out.metadata["has_level_weights"] = opt.level_weights.has_value();
  out.metadata["level_weights"] = std::move(beta);
  out.metadata["level_summaries"] = std::move(summaries);
  return out;
}

}  // namespace ruvector
