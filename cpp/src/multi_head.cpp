// MultiHeadAttention front end: validate once, then in-projections (GEMM), every head through
// the fused attention kernel on strided views of the projections, and the out-projection.
#include "ruvector/multi_head.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "attention_core.hpp"
#include "memory/memory.hpp"
#include "messages.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "state_dict.hpp"

namespace ruvector {

// torch's parameters. Packed layout (kdim == vdim == E): in_proj [3E, E] holds the q, k, v
// projections one under the other; otherwise q_proj [E, E], k_proj [E, kdim], v_proj [E, vdim].
// Biases are [1, n] rows, empty without use_bias.
struct MultiHeadAttention::Weights {
  RowMatrixXf in_proj, q_proj, k_proj, v_proj;
  RowMatrixXf in_bias;         // [1, 3E]
  RowMatrixXf out_proj;        // [E, E]
  RowMatrixXf out_bias;        // [1, E]
  RowMatrixXf bias_k, bias_v;  // [1, E] each (add_bias_kv), else empty

  // Projection i (0 = q, 1 = k, 2 = v) as a torch Linear weight [E, in] with row stride ld.
  const float* proj(int i, Index embed_dim) const {
    if (in_proj.size()) return in_proj.data() + static_cast<Index>(i) * embed_dim * in_proj.cols();
    return (i == 0 ? q_proj : i == 1 ? k_proj : v_proj).data();
  }
  std::size_t proj_ld(int i) const {
    if (in_proj.size()) return static_cast<std::size_t>(in_proj.cols());
    return static_cast<std::size_t>((i == 0 ? q_proj : i == 1 ? k_proj : v_proj).cols());
  }
  const float* bias(int i, Index embed_dim) const {
    return in_bias.size() ? in_bias.data() + static_cast<Index>(i) * embed_dim : nullptr;
  }

  // Which projections are the identity with zero (or no) bias, as in an untrained layer:
  // [0..2] the q, k, v in-projections (square ones only), [3] the out-projection. Their
  // products are skipped (each would return its input).
  bool identity[4] = {false, false, false, false};
  bool finite = true;  // no NaN/Inf in any weight or bias

  void find_identities(Index embed_dim, Index kdim, Index vdim) {
    const auto is_eye = [](const float* w, Index n, std::size_t ld) {
      for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j)
          if (w[static_cast<std::size_t>(i) * ld + static_cast<std::size_t>(j)] != (i == j ? 1.0f : 0.0f)) return false;
      return true;
    };
    const auto is_zero = [](const float* b, Index n) {
      return b == nullptr || std::all_of(b, b + n, [](float x) { return x == 0.0f; });
    };
    const Index in[3] = {embed_dim, kdim, vdim};
    for (int i = 0; i < 3; ++i)
      identity[i] = in[i] == embed_dim && is_eye(proj(i, embed_dim), embed_dim, proj_ld(i)) &&
                    is_zero(bias(i, embed_dim), embed_dim);
    identity[3] = is_eye(out_proj.data(), embed_dim, static_cast<std::size_t>(embed_dim)) &&
                  is_zero(out_bias.size() ? out_bias.data() : nullptr, embed_dim);
    finite = true;
    for (const RowMatrixXf* m : {&in_proj, &q_proj, &k_proj, &v_proj, &in_bias, &out_proj, &out_bias, &bias_k, &bias_v})
      finite = finite && std::all_of(m->data(), m->data() + m->size(), [](float x) { return std::isfinite(x); });
  }

  // The matrix behind a torch state_dict name (null for a name torch does not have).
  static RowMatrixXf Weights::* member(const std::string& name) {
    static const std::pair<const char*, RowMatrixXf Weights::*> table[] = {
        {"in_proj_weight", &Weights::in_proj}, {"q_proj_weight", &Weights::q_proj},
        {"k_proj_weight", &Weights::k_proj},   {"v_proj_weight", &Weights::v_proj},
        {"in_proj_bias", &Weights::in_bias},   {"out_proj.weight", &Weights::out_proj},
        {"out_proj.bias", &Weights::out_bias}, {"bias_k", &Weights::bias_k},
        {"bias_v", &Weights::bias_v}};
    for (const auto& [n, m] : table)
      if (name == n) return m;
    return nullptr;
  }
};

namespace {

constexpr const char* kInProjWeight = "in_proj_weight";
constexpr const char* kInProjBias = "in_proj_bias";
constexpr const char* kOutProjWeight = "out_proj.weight";
constexpr const char* kOutProjBias = "out_proj.bias";
constexpr const char* kSeparate[3] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
constexpr const char* kBiasK = "bias_k";
constexpr const char* kBiasV = "bias_v";

// Identity with ones on the main diagonal of a rectangular matrix (numpy.eye(rows, cols)).
RowMatrixXf eye(Index rows, Index cols) {
  return RowMatrixXf::Identity(rows, cols);
}

// C[m, n] = A[m, k]·Wᵀ + bias, W a torch Linear weight [n, k] with row stride ldw (all finite
// when w_finite). Wide outputs (the fused q/k/v projection) go in column slices whose packed
// weights (~1 MB) stay in L2: measured ~10% faster than one pass over a 3 MB packed matrix.
// Returns whether every element of C is finite (the heads then need not check it again).
bool linear(const float* a, std::size_t lda, std::size_t m, std::size_t k, const float* w, std::size_t ldw,
            std::size_t n, const float* bias, float* c, std::size_t ldc, bool w_finite) {
  constexpr std::size_t kSliceFloats = 256 * 1024;
  const std::size_t slice = std::max<std::size_t>(64, kSliceFloats / std::max<std::size_t>(k, 1) / 64 * 64);
  bool finite = true;
  for (std::size_t col0 = 0; col0 < n; col0 += slice) {
    simd::GemmParams g;
    g.a = a;
    g.lda = lda;
    g.b = w + col0 * ldw;
    g.ldb = ldw;
    g.b_transposed = true;
    g.c = c + col0;
    g.ldc = ldc;
    g.m = m;
    g.n = std::min(slice, n - col0);
    g.k = k;
    g.bias = bias ? bias + col0 : nullptr;
    g.b_finite = w_finite;
    bool slice_finite = false;
    g.c_finite = amx_enabled() ? &slice_finite : nullptr;  // only the AMX kernels use it
    detail::run_gemm(g);
    finite = finite && slice_finite;
  }
  return finite;
}

std::size_t sz(Index n) {
  return static_cast<std::size_t>(n);
}

// No NaN or ±inf anywhere in x (the SIMD kernel, a row at a time: Eigen's allFinite took
// ~0.9 ms for a 1000×512 input).
bool all_finite(const MatrixRef& x) {
  const auto& kernels = simd::active_kernels();
  for (Index r = 0; r < x.rows(); ++r)
    if (!kernels.all_finite(x.data() + r * x.outerStride(), sz(x.cols()))) return false;
  return true;
}

// Rows with nothing to attend to (every key masked) under the kernel's mask group `m` over
// [lq, lk] (its rows may repeat one: ld 0). The masks are shared by all heads, so such a row
// is dead in every head; its values are zeros, as for DotProductAttention.
std::vector<std::uint8_t> dead_rows(const simd::FlashMask& m, Index lq, Index lk) {
  std::vector<std::uint8_t> dead;
  if (lk == 0) return std::vector<std::uint8_t>(static_cast<std::size_t>(lq), 1);
  if (!m.boolean && !m.additive) return dead;  // causal always keeps key 0
  dead.assign(static_cast<std::size_t>(lq), 0);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (Index i = 0; i < lq; ++i) {
    const std::size_t end = sz(m.causal ? std::min(lk, i + 1) : lk), row = sz(i) * m.ld;
    bool any = false;
    for (std::size_t j = 0; j < end && !any; ++j)
      any = (!m.boolean || m.boolean[row + j] != 0) && (!m.additive || m.additive[row + j] != neg_inf);
    dead[static_cast<std::size_t>(i)] = any ? 0 : 1;
  }
  return dead;
}

// The kernel's mask group for a call over s = lk + added keys: the caller's mask, causal and
// key padding as one, the added columns allowed (torch pads its masks with "allowed"). Without
// added keys the mask and causal flag pass as they are and a key padding mask alone is one
// shared row (ld 0); any other combination is written out [lq, s] into `bools` or `adds`.
simd::FlashMask call_mask(const MultiHeadOptions& opt, Index lq, Index lk, Index s, std::vector<std::uint8_t>& bools,
                          std::vector<float>& adds) {
  const AttentionMask& user = opt.mask;
  const std::uint8_t* padding = opt.key_padding_mask.ignore;
  const bool added = s > lk;
  if (!padding && (!added || (user.kind == AttentionMask::Kind::None && !opt.causal)))
    return detail::flash_mask(user, opt.causal && !added);  // nothing to combine
  const bool write_causal = opt.causal && added;            // causal would hide the added keys from early rows
  simd::FlashMask m;
  m.causal = opt.causal && !write_causal;
  if (user.kind == AttentionMask::Kind::None && !write_causal) {  // key padding alone: one row
    bools.assign(sz(s), 1);
    for (Index j = 0; j < lk; ++j) bools[sz(j)] = padding[j] ? 0 : 1;
    m.boolean = bools.data();
    m.ld = 0;
    return m;
  }
  const bool additive = user.kind == AttentionMask::Kind::Additive;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (additive)
    adds.assign(sz(lq) * sz(s), 0.0f);
  else
    bools.assign(sz(lq) * sz(s), 1);
  for (Index i = 0; i < lq; ++i) {
    // keys of row i the caller's mask, causal (when written out) and padding block
    const Index causal_end = write_causal ? std::min(lk, i + 1) : lk;
    if (additive) {
      float* row = adds.data() + sz(i) * sz(s);
      std::copy_n(user.additive + i * user.stride, lk, row);
      for (Index j = causal_end; j < lk; ++j) row[j] = neg_inf;
      if (padding)
        for (Index j = 0; j < lk; ++j)
          if (padding[j]) row[j] = neg_inf;
    } else {
      std::uint8_t* row = bools.data() + sz(i) * sz(s);
      if (user.kind == AttentionMask::Kind::Boolean)
        for (Index j = 0; j < lk; ++j) row[j] = user.boolean[i * user.stride + j] ? 1 : 0;
      for (Index j = causal_end; j < lk; ++j) row[j] = 0;
      if (padding)
        for (Index j = 0; j < lk; ++j)
          if (padding[j]) row[j] = 0;
    }
  }
  if (additive)
    m.additive = adds.data();
  else
    m.boolean = bools.data();
  m.ld = sz(s);
  return m;
}

}  // namespace

MultiHeadAttention::MultiHeadAttention(AttentionConfig config, std::optional<Index> embed_dim,
                                       std::optional<Index> kdim, std::optional<Index> vdim, bool add_bias_kv,
                                       bool add_zero_attn)
    : config_(config), add_bias_kv_(add_bias_kv), add_zero_attn_(add_zero_attn) {
  config_.validate();
  embed_dim_ = embed_dim ? *embed_dim : static_cast<Index>(config_.num_heads) * config_.head_dim;
  if (embed_dim_ < 1) throw InvalidConfig("embed_dim must be >= 1, got " + std::to_string(embed_dim_));
  if (embed_dim_ % config_.num_heads != 0)
    throw InvalidConfig("embed_dim " + std::to_string(embed_dim_) + " is not divisible by num_heads " +
                        std::to_string(config_.num_heads) +
                        ": choose an embed_dim that is a multiple of num_heads (head size = embed_dim / num_heads)");
  kdim_ = kdim ? *kdim : embed_dim_;
  vdim_ = vdim ? *vdim : embed_dim_;
  if (kdim_ < 1) throw InvalidConfig("kdim must be >= 1 (or None for embed_dim), got " + std::to_string(kdim_));
  if (vdim_ < 1) throw InvalidConfig("vdim must be >= 1 (or None for embed_dim), got " + std::to_string(vdim_));
  const char* hint = "choose a smaller embed_dim, kdim or vdim";
  // Widths beyond 2^31 could never be allocated (a weight matrix is width² floats) and would
  // overflow the size arithmetic below.
  constexpr Index kMaxWidth = std::numeric_limits<std::int32_t>::max();
  for (const auto& [name, width] : {std::pair{"embed_dim", embed_dim_}, {"kdim", kdim_}, {"vdim", vdim_}})
    if (width > kMaxWidth)
      throw InvalidConfig(std::string(name) + " " + std::to_string(width) + " is too large (at most 2^31 - 1); " +
                          hint);
  memory::checked_elements(3 * embed_dim_, std::max({embed_dim_, kdim_, vdim_}), "the projection weights", hint);

  auto w = std::make_shared<Weights>();
  if (packed()) {
    w->in_proj.resize(3 * embed_dim_, embed_dim_);
    for (int i = 0; i < 3; ++i) w->in_proj.middleRows(i * embed_dim_, embed_dim_) = eye(embed_dim_, embed_dim_);
  } else {
    w->q_proj = eye(embed_dim_, embed_dim_);
    w->k_proj = eye(embed_dim_, kdim_);
    w->v_proj = eye(embed_dim_, vdim_);
  }
  w->out_proj = eye(embed_dim_, embed_dim_);
  if (config_.use_bias) {
    w->in_bias = RowMatrixXf::Zero(1, 3 * embed_dim_);
    w->out_bias = RowMatrixXf::Zero(1, embed_dim_);
  }
  if (add_bias_kv_) {
    w->bias_k = RowMatrixXf::Zero(1, embed_dim_);
    w->bias_v = RowMatrixXf::Zero(1, embed_dim_);
  }
  w->find_identities(embed_dim_, kdim_, vdim_);
  weights_ = std::move(w);
}

MultiHeadAttention::MultiHeadAttention(const MultiHeadAttention& other)
    : config_(other.config_),
      embed_dim_(other.embed_dim_),
      kdim_(other.kdim_),
      vdim_(other.vdim_),
      add_bias_kv_(other.add_bias_kv_),
      add_zero_attn_(other.add_zero_attn_),
      weights_(other.weights()),
      calls_(other.calls_.load()) {}

MultiHeadAttention& MultiHeadAttention::operator=(const MultiHeadAttention& other) {
  if (this == &other) return *this;
  auto w = other.weights();
  config_ = other.config_;
  embed_dim_ = other.embed_dim_;
  kdim_ = other.kdim_;
  vdim_ = other.vdim_;
  add_bias_kv_ = other.add_bias_kv_;
  add_zero_attn_ = other.add_zero_attn_;
  {
    std::lock_guard<std::mutex> lock(weights_mutex_);
    weights_ = std::move(w);
  }
  calls_.store(other.calls_.load());
  return *this;
}

MultiHeadAttention::~MultiHeadAttention() = default;

std::shared_ptr<const MultiHeadAttention::Weights> MultiHeadAttention::weights() const {
  std::lock_guard<std::mutex> lock(weights_mutex_);
  return weights_;
}

std::vector<std::pair<std::string, std::vector<Index>>> MultiHeadAttention::weight_shapes() const {
  const Index e = embed_dim_;
  std::vector<std::pair<std::string, std::vector<Index>>> shapes;
  if (packed()) {
    shapes.push_back({kInProjWeight, {3 * e, e}});
  } else {
    shapes.push_back({kSeparate[0], {e, e}});
    shapes.push_back({kSeparate[1], {e, kdim_}});
    shapes.push_back({kSeparate[2], {e, vdim_}});
  }
  if (config_.use_bias) shapes.push_back({kInProjBias, {3 * e}});
  if (add_bias_kv_) {
    shapes.push_back({kBiasK, {1, 1, e}});
    shapes.push_back({kBiasV, {1, 1, e}});
  }
  shapes.push_back({kOutProjWeight, {e, e}});
  if (config_.use_bias) shapes.push_back({kOutProjBias, {e}});
  return shapes;
}

StateDict MultiHeadAttention::get_weights() const {
  const auto w = weights();
  StateDict d;
  for (const auto& [name, shape] : weight_shapes()) d[name] = Parameter{shape, (*w).*Weights::member(name)};
  return d;
}

void MultiHeadAttention::set_weights(const StateDict& d) {
  const auto shapes = weight_shapes();
  std::string names;
  for (const auto& [name, shape] : shapes) names += (names.empty() ? "" : ", ") + name + " " + detail::shape_str(shape);

  for (const auto& [name, param] : d) {
    auto it = std::find_if(shapes.begin(), shapes.end(), [&](const auto& s) { return s.first == name; });
    if (it == shapes.end()) {
      std::string why;
      if (name == kInProjWeight)
        why =
            "kdim/vdim differ from embed_dim, so q, k and v have separate q_proj_weight, k_proj_weight, "
            "v_proj_weight (as in torch); ";
      else if (name == kSeparate[0] || name == kSeparate[1] || name == kSeparate[2])
        why =
            "kdim == vdim == embed_dim, so q, k and v are packed in in_proj_weight [3E, E] (rows q, k, v; "
            "as in torch); ";
      else if (name == kInProjBias || name == kOutProjBias)
        why = "this layer has no biases (use_bias=False); ";
      else if (name == kBiasK || name == kBiasV)
        why = "this layer was built without add_bias_kv (build it with add_bias_kv=True, as the torch module); ";
      throw InvalidInput("unknown weight '" + name + "': " + why + "this layer's weights are " + names);
    }
    const std::vector<Index>& expected = it->second;
    if (param.shape != expected)
      throw InvalidInput("weight '" + name + "' has shape " + detail::shape_str(param.shape) + ", expected " +
                         detail::shape_str(expected));
    detail::check_parameter_data(name, param);
  }
  for (const auto& [name, shape] : shapes)
    if (d.find(name) == d.end()) {
      std::string hint = "give every weight that get_weights() returns (" + names + ")";
      if (name == kInProjBias || name == kOutProjBias)
        hint += "; a torch module built with bias=False has none: build this layer with use_bias=False";
      throw InvalidInput("missing weight '" + name + "' " + detail::shape_str(shape) + ": " + hint);
    }

  auto w = std::make_shared<Weights>();
  for (const auto& [name, shape] : shapes)  // biases [n] are kept as [1, n] rows
    (*w).*Weights::member(name) = detail::parameter_matrix(d.at(name));
  w->find_identities(embed_dim_, kdim_, vdim_);
  std::lock_guard<std::mutex> lock(weights_mutex_);
  weights_ = std::move(w);
}

void MultiHeadAttention::validate(const MatrixRef& q, const MatrixRef& k, const MatrixRef& v,
                                  const MultiHeadOptions& opt) const {
  const Index lq = q.rows(), lk = k.rows();
  if (q.cols() != embed_dim_)
    throw DimensionMismatch("query has " + std::to_string(q.cols()) + " columns, expected embed_dim = " +
                                std::to_string(embed_dim_) + ": pass query [Lq, embed_dim]",
                            embed_dim_, q.cols());
  if (k.cols() != kdim_)
    throw DimensionMismatch(
        "key has " + std::to_string(k.cols()) + " columns, expected kdim = " + std::to_string(kdim_) +
            ": pass key [Lk, kdim] (build the layer with kdim=" + std::to_string(k.cols()) + " for keys of that width)",
        kdim_, k.cols());
  if (v.cols() != vdim_)
    throw DimensionMismatch("value has " + std::to_string(v.cols()) +
                                " columns, expected vdim = " + std::to_string(vdim_) +
                                ": pass value [Lk, vdim] (build the layer with vdim=" + std::to_string(v.cols()) +
                                " for values of that width)",
                            vdim_, v.cols());
  detail::check_value_rows(lk, v.rows());
  detail::check_mask_shape(opt.mask, lq, lk,
                           added_keys() ? " (one mask for all heads; the added bias_k / zero keys are always allowed)"
                                        : " (one mask for all heads)");
  const KeyPaddingMask& padding = opt.key_padding_mask;
  if (padding.ignore == nullptr && padding.size > 0)
    throw InvalidInput("key_padding_mask needs its data pointer (got a null one with size " +
                       std::to_string(padding.size) + "): make it with KeyPaddingMask::from_bool");
  if (padding.ignore != nullptr && padding.size != lk)
    throw DimensionMismatch("key_padding_mask has " + std::to_string(padding.size) +
                                " entries, expected one per key (Lk = " + std::to_string(lk) +
                                "; True = ignore that key)",
                            lk, padding.size);
  const char* hint = "use shorter sequences";
  memory::checked_elements(std::max(lq, lk + added_keys()), 3 * embed_dim_, "the projected query, key and value", hint);
  if (opt.need_weights)
    memory::checked_elements(num_heads() * lq, lk + added_keys(), "the per-head attention weights",
                             "pass need_weights=False to stream without them");
}

AttentionOutput MultiHeadAttention::compute(const MatrixRef& q, const MatrixRef& k, const MatrixRef& v,
                                            const MultiHeadOptions& opt) const {
  validate(q, k, v, opt);
  const std::shared_ptr<const Weights> w = weights();
  const Index lq = q.rows(), lk = k.rows(), e = embed_dim_, heads = num_heads(), hd = head_dim();

  AttentionOutput out;
  out.values = memory::output_matrix(lq, e);
  out.metadata["attention_type"] = std::string("multi_head");
  out.metadata["num_heads"] = static_cast<std::int64_t>(heads);
  out.metadata["head_dim"] = static_cast<std::int64_t>(hd);
  out.metadata["embed_dim"] = static_cast<std::int64_t>(e);
  out.metadata["scale"] = config_.scale_for(hd);
  out.metadata["simd_backend"] = std::string(backend_name(simd_backend()));
  const Index added = added_keys(), keys = lk + added;  // the keys attended to: given, then added
  const bool per_head = opt.need_weights && !opt.average_weights;
  if (opt.need_weights) {
    out.weights = memory::output_matrix(per_head ? heads * lq : lq, keys);
    out.weights_shape = per_head ? std::vector<Index>{heads, lq, keys} : std::vector<Index>{lq, keys};
  }
  if (lq == 0) return out;
  std::vector<std::uint8_t> mask_bools;
  std::vector<float> mask_adds;
  const simd::FlashMask mask = call_mask(opt, lq, lk, keys, mask_bools, mask_adds);
  const std::vector<std::uint8_t> dead = dead_rows(mask, lq, keys);
  if (keys == 0) {  // nothing to attend to anywhere
    out.values.setZero();
    return out;
  }

  // In-projections. An identity projection (an untrained layer) is skipped: the input is its
  // own projection, unless it holds NaN/Inf, which the product spreads over the whole row (as
  // torch's does) and which therefore take the product. Self-attention on the packed layout
  // (query, key and value the same array) is one GEMM against all of in_proj; key == value one
  // GEMM for both. The added keys and values (bias_k / bias_v, then zeros) are rows lk.. of the
  // projected keys and values, so those get buffers of `keys` rows.
  const auto same = [](const MatrixRef& a, const MatrixRef& b) {
    return a.data() == b.data() && a.rows() == b.rows() && a.cols() == b.cols() && a.outerStride() == b.outerStride();
  };
  const bool skip_q = w->identity[0] && all_finite(q);
  const bool skip_k = w->identity[1] && (same(k, q) ? skip_q : all_finite(k));
  const bool skip_v = w->identity[2] && (same(v, k) ? skip_k : same(v, q) ? skip_q : all_finite(v));
  RowMatrixXf qbuf, kbuf, vbuf;
  const float *qp, *kp, *vp;
  std::size_t ldq, ldk, ldv;
  bool finite_q = skip_q, finite_k = skip_k, finite_v = skip_v;  // known to hold no NaN/Inf
  if (packed() && !skip_q && !skip_k && !skip_v && same(q, k) && same(k, v)) {
    qbuf.resize(lq + added, 3 * e);  // lq == lk
    finite_q = finite_k = finite_v = linear(q.data(), sz(q.outerStride()), sz(lq), sz(e), w->proj(0, e), w->proj_ld(0),
                                            sz(3 * e), w->bias(0, e), qbuf.data(), sz(3 * e), w->finite);
    qp = qbuf.data();
    kp = qp + e;
    vp = qp + 2 * e;
    ldq = ldk = ldv = sz(3 * e);
  } else {
    // Projection i of x into buf (with `extra` rows after x's), or x itself when skipped and
    // no rows are added.
    const auto project = [&](int i, const MatrixRef& x, Index in, bool skip, Index extra, RowMatrixXf& buf,
                             const float*& dst, std::size_t& ld, bool& finite) {
      if (skip && extra == 0) {
        dst = x.data();
        ld = sz(x.outerStride());
        return;
      }
      buf.resize(x.rows() + extra, e);
      if (skip)
        buf.topRows(x.rows()) = x;
      else
        finite = linear(x.data(), sz(x.outerStride()), sz(x.rows()), sz(in), w->proj(i, e), w->proj_ld(i), sz(e),
                        w->bias(i, e), buf.data(), sz(e), w->finite);
      dst = buf.data();
      ld = sz(e);
    };
    project(0, q, e, skip_q, 0, qbuf, qp, ldq, finite_q);
    if (packed() && !skip_k && !skip_v && same(k, v)) {
      kbuf.resize(lk + added, 2 * e);
      finite_k = finite_v = linear(k.data(), sz(k.outerStride()), sz(lk), sz(kdim_), w->proj(1, e), w->proj_ld(1),
                                   sz(2 * e), w->bias(1, e), kbuf.data(), sz(2 * e), w->finite);
      kp = kbuf.data();
      vp = kp + e;
      ldk = ldv = sz(2 * e);
    } else {
      project(1, k, kdim_, skip_k, added, kbuf, kp, ldk, finite_k);
      project(2, v, vdim_, skip_v, added, vbuf, vp, ldv, finite_v);
    }
  }
  if (added) {  // torch's order: the projected keys, bias_k, then the zero key (values alike)
    const auto append = [&](const float* base, std::size_t ld, const RowMatrixXf& bias) {
      float* row = const_cast<float*>(base) + sz(lk) * ld;  // rows lk.. of a buffer of ours
      if (add_bias_kv_) {
        std::copy_n(bias.data(), sz(e), row);
        row += ld;
      }
      if (add_zero_attn_) std::fill_n(row, sz(e), 0.0f);
    };
    append(kp, ldk, w->bias_k);
    append(vp, ldv, w->bias_v);
    if (add_bias_kv_ && !w->finite) finite_k = finite_v = false;  // bias_k / bias_v may be the NaN
  }

  // Every head: the fused kernel on column slices of the projections, writing its slice of
  // the concatenated heads. One call takes all heads: with weights it walks query blocks
  // through every head, averaging the weights while a block is in cache.
  // With an identity out-projection the heads write the output itself.
  RowMatrixXf context;
  if (!w->identity[3]) context.resize(lq, e);
  const bool dropout = opt.training && config_.dropout > 0.0;
  const std::uint64_t call = dropout ? calls_.fetch_add(1, std::memory_order_relaxed) : 0;
  simd::FlashParams p;
  p.q = qp;
  p.ldq = ldq;
  p.k = kp;
  p.ldk = ldk;
  p.v = vp;
  p.ldv = ldv;
  p.out = w->identity[3] ? out.values.data() : context.data();
  p.ldo = sz(e);
  p.lq = sz(lq);
  p.lk = sz(keys);
  p.d = p.dv = sz(hd);
  p.scale = static_cast<float>(config_.scale_for(hd));
  p.mask = mask;
  if (dropout) p.dropout = detail::flash_dropout(config_, call * sz(heads));  // heads drop independently
  p.heads.count = sz(heads);
  p.inputs_finite = finite_q && finite_k && finite_v;
  if (opt.need_weights) {
    p.weights = out.weights.data();
    p.ldw = sz(keys);
    p.heads.average = !per_head;
  }
  detail::run_flash(p);

  if (w->identity[3] && !all_finite(out.values)) context = out.values;  // NaN/Inf: the product spreads them
  if (context.size())
    linear(context.data(), sz(e), sz(lq), sz(e), w->out_proj.data(), sz(e), sz(e),
           w->out_bias.size() ? w->out_bias.data() : nullptr, out.values.data(), sz(e), w->finite);
  for (std::size_t i = 0; i < dead.size(); ++i)
    if (dead[i]) out.values.row(static_cast<Index>(i)).setZero();
  return out;
}

}  // namespace ruvector
