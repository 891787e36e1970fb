"""MultiHeadAttention against torch.nn.MultiheadAttention (docs/contract.md §9): add_bias_kv,
add_zero_attn, key_padding_mask and from_torch, in every combination torch allows, on every
SIMD backend; skipped without torch. The largest error seen is printed (pytest -s)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from conftest import randn
from test_multi_head import torch_forward

import ruvector as rv

torch = pytest.importorskip("torch")

TOL = {"rtol": 1e-4, "atol": 3e-5}
LARGEST = {"error": 0.0, "cases": 0}


def module(heads, e, kdim=None, vdim=None, *, bias=True, add_bias_kv=False, add_zero_attn=False, seed=0):
    """An eval-mode torch module with random weights (biases, bias_k and bias_v too)."""
    torch.manual_seed(seed)
    m = torch.nn.MultiheadAttention(
        e,
        heads,
        bias=bias,
        kdim=kdim,
        vdim=vdim,
        add_bias_kv=add_bias_kv,
        add_zero_attn=add_zero_attn,
        batch_first=True,
    ).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) / np.sqrt(p.shape[-1]))
    return m


def allowed(lq, lk, added, mask, causal, key_padding_mask):
    """[Lq, Lk + added]: pairs this library's masks allow; the added keys always."""
    ok = np.ones((lq, lk + added), bool)
    if mask is not None:
        ok[:, :lk] &= mask if mask.dtype == bool else mask != -np.inf
    if causal:
        ok[:, :lk] &= np.tri(lq, lk, dtype=bool)
    if key_padding_mask is not None:
        ok[:, :lk] &= ~key_padding_mask
    return ok


def torch_call(m, q, k, v, **kwargs):
    return torch_forward(torch, m, q, k, v, **kwargs)


def check(ours, theirs, rows):
    """ours ≈ theirs on the rows that may attend to something (torch gives NaN or its
    out-projection bias on the others; this library zeros)."""
    np.testing.assert_allclose(ours[..., rows, :], theirs[..., rows, :], **TOL)
    if rows.any():
        LARGEST["error"] = max(LARGEST["error"], float(np.abs(ours[..., rows, :] - theirs[..., rows, :]).max()))
    LARGEST["cases"] += 1


SHAPES = [  # (H, E, kdim, vdim, Lq, Lk)
    (1, 4, None, None, 1, 1),
    (2, 8, None, None, 7, 13),
    (2, 8, 5, 3, 6, 6),
    (4, 32, None, None, 40, 40),
    (3, 24, 24, 10, 33, 70),
]


@pytest.mark.parametrize(("heads", "e", "kdim", "vdim", "lq", "lk"), SHAPES)
@pytest.mark.parametrize(("add_bias_kv", "add_zero_attn"), list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("bias", [True, False])
def test_every_combination_matches_torch(backend, rng, heads, e, kdim, vdim, lq, lk, add_bias_kv, add_zero_attn, bias):
    m = module(heads, e, kdim, vdim, bias=bias, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn)
    layer = rv.MultiHeadAttention.from_torch(m)
    added = add_bias_kv + add_zero_attn
    q, k, v = randn(rng, lq, e), randn(rng, lk, kdim or e), randn(rng, lk, vdim or e)
    bool_mask = rng.random((lq, lk)) > 0.3
    float_mask = rng.standard_normal((lq, lk)).astype(np.float32)
    float_mask[rng.random((lq, lk)) < 0.2] = -np.inf
    padding = rng.random(lk) < 0.3
    self_attention = kdim is None and vdim is None and lq == lk
    for mask, causal, key_padding_mask in itertools.product(
        (None, bool_mask, float_mask), (False, True), (None, padding)
    ):
        rows = allowed(lq, lk, added, mask, causal, key_padding_mask).any(axis=1)
        operands = [(q, k, v)] + ([(q, q, q)] if self_attention else [])
        for (qq, kk, vv), need_weights, average in itertools.product(operands, (True, False), (True, False)):
            if not need_weights and not average:
                continue
            kw = {"mask": mask, "causal": causal, "key_padding_mask": key_padding_mask}
            ref_v, ref_w = torch_call(m, qq, kk, vv, **kw, need_weights=need_weights, average_weights=average)
            out = layer.compute(qq, kk, vv, **kw, need_weights=need_weights, average_weights=average)
            check(out.values, ref_v, rows)
            np.testing.assert_array_equal(out.values[~rows], 0.0)
            if need_weights:
                assert out.weights.shape == ref_w.shape == ((lq,) if average else (heads, lq)) + (lk + added,)
                check(out.weights, ref_w, rows)
                np.testing.assert_array_equal(out.weights[..., ~rows, :], 0.0)


def test_largest_error_is_reported():
    # runs after the combinations above (file order): their largest error, for the record
    print(f"\nMultiHeadAttention vs torch: {LARGEST['cases']} comparisons, largest error {LARGEST['error']:.3g}")
    assert LARGEST["error"] < 1e-3


def test_added_columns_in_torchs_order(rng):
    """bias_k's column, then the zero column: the zero key scores 0, so its weight is
    exp(0 - max) / sum; with bias_k = -inf·key direction its column weight is ~0."""
    m = module(2, 8, add_bias_kv=True, add_zero_attn=True)
    layer = rv.MultiHeadAttention.from_torch(m)
    assert (layer.add_bias_kv, layer.add_zero_attn) == (True, True)
    names = list(layer.get_weights())
    assert names == list(m.state_dict())
    assert layer.get_weights()["bias_k"].shape == (1, 1, 8)
    x = randn(rng, 5, 8)
    out = layer.compute(x, x, x, average_weights=False)
    assert out.weights.shape == (2, 5, 7)
    # the zero key's score is 0 in every head: its weight is 1 / sum_j exp(s_j)
    hd = 4
    w = layer.get_weights()
    kp = x @ w["in_proj_weight"][8:16].T + w["in_proj_bias"][8:16]
    qp = x @ w["in_proj_weight"][:8].T + w["in_proj_bias"][:8]
    for h in range(2):
        cols = slice(h * hd, (h + 1) * hd)
        keys = np.vstack([kp[:, cols], w["bias_k"][0, 0, cols], np.zeros(hd)])
        s = qp[:, cols] @ keys.T / np.sqrt(hd)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(out.weights[h], p, rtol=1e-4, atol=1e-6)


def test_added_keys_keep_masked_rows_alive(rng):
    """Every key masked: torch's padded masks still allow the added columns, so no row is dead."""
    for bias_kv, zero in [(True, False), (False, True)]:
        m = module(2, 8, add_bias_kv=bias_kv, add_zero_attn=zero)
        layer = rv.MultiHeadAttention.from_torch(m)
        x = randn(rng, 4, 8)
        mask = np.zeros((4, 4), bool)
        ref_v, ref_w = torch_call(m, x, x, x, mask=mask, key_padding_mask=np.ones(4, bool))
        out = layer.compute(x, x, x, mask=mask, key_padding_mask=np.ones(4, bool))
        assert np.isfinite(ref_v).all()
        np.testing.assert_allclose(out.values, ref_v, **TOL)
        np.testing.assert_allclose(out.weights, ref_w, **TOL)
        np.testing.assert_array_equal(out.weights[:, :4], 0.0)


def test_key_padding_alone_matches_numpy(backend, rng):
    """key_padding_mask without any other mask (one shared row in the kernel) against a plain
    boolean mask that blocks the same keys in every row."""
    layer = rv.MultiHeadAttention({"num_heads": 4}, embed_dim=32)
    layer.set_weights({k: randn(rng, *a.shape) * 0.2 for k, a in layer.get_weights().items()})
    for lq, lk in [(1, 1), (9, 40), (130, 300)]:
        q, kv = randn(rng, lq, 32), randn(rng, lk, 32)
        padding = rng.random(lk) < 0.4
        padding[0] = lk == 1  # a fully padded sequence when there is one key
        as_mask = np.broadcast_to(~padding, (lq, lk)).copy()
        for causal, need_weights in itertools.product((False, True), (False, True)):
            ours = layer.compute(q, kv, kv, key_padding_mask=padding, causal=causal, need_weights=need_weights)
            plain = layer.compute(q, kv, kv, mask=as_mask, causal=causal, need_weights=need_weights)
            np.testing.assert_allclose(ours.values, plain.values, rtol=1e-5, atol=1e-6)
            if need_weights:
                np.testing.assert_allclose(ours.weights, plain.weights, rtol=1e-5, atol=1e-6)


def test_key_padding_mask_errors(rng):
    layer = rv.MultiHeadAttention({"num_heads": 2}, embed_dim=8)
    x = randn(rng, 3, 8)
    with pytest.raises(rv.DimensionMismatchError, match="key_padding_mask has 4 entries"):
        layer.compute(x, x, x, key_padding_mask=np.zeros(4, bool))
    with pytest.raises(rv.DimensionMismatchError, match="1-D"):
        layer.compute(x, x, x, key_padding_mask=np.zeros((1, 3), bool))
    with pytest.raises(rv.InvalidInputError, match=r"boolean.*float padding mask"):
        layer.compute(x, x, x, key_padding_mask=np.zeros(3, np.float32))
    with pytest.raises(rv.InvalidInputError, match="astype"):
        layer.compute(x, x, x, key_padding_mask=np.zeros(3, np.int64))
    with pytest.raises(rv.InvalidInputError, match="key_padding_mask"):
        layer.compute(x, x, x, key_padding_mask="no")
    out = layer.compute(x, x, x, key_padding_mask=torch.tensor([False, True, False]))  # a tensor works
    assert out.weights[:, 1].max() == 0.0


def test_key_padding_mask_in_batches(rng):
    layer = rv.MultiHeadAttention.from_torch(module(2, 8, add_zero_attn=True))
    qs, kvs = randn(rng, 3, 5, 8), randn(rng, 3, 6, 8)
    paddings = rng.random((3, 6)) < 0.4
    expected = [layer.compute(qs[i], kvs[i], kvs[i], key_padding_mask=paddings[i]) for i in range(3)]
    for given in (paddings, list(paddings), [list(p) for p in paddings]):
        for outs in (
            layer.compute_batch(qs, kvs, kvs, key_padding_mask=given),  # stacked [B, L, E]
            layer.compute_batch(list(qs), list(kvs), list(kvs), key_padding_mask=given),
        ):
            for out, ref in zip(outs, expected, strict=True):
                np.testing.assert_array_equal(out.values, ref.values)
                np.testing.assert_array_equal(out.weights, ref.weights)
    shared = layer.compute_batch(qs, kvs, kvs, key_padding_mask=paddings[0])  # one [Lk] for all
    for i, out in enumerate(shared):
        np.testing.assert_array_equal(
            out.values, layer.compute(qs[i], kvs[i], kvs[i], key_padding_mask=paddings[0]).values
        )
    ragged = layer.compute_batch(
        [qs[0], qs[1]], [kvs[0], kvs[1][:4]], [kvs[0], kvs[1][:4]], key_padding_mask=[paddings[0], None]
    )
    np.testing.assert_array_equal(ragged[1].values, layer.compute(qs[1], kvs[1][:4], kvs[1][:4]).values)
    with pytest.raises(rv.InvalidInputError, match="2 entries for 3 items"):
        layer.compute_batch(qs, kvs, kvs, key_padding_mask=paddings[:2])
    with pytest.raises(rv.DimensionMismatchError, match="item 1"):
        layer.compute_batch(
            list(qs), list(kvs), list(kvs), key_padding_mask=[paddings[0], paddings[1][:3], paddings[2]]
        )


def test_async_forms_take_key_padding_mask(rng):
    import asyncio

    layer = rv.MultiHeadAttention.from_torch(module(2, 8, add_bias_kv=True))
    x = randn(rng, 4, 8)
    padding = np.array([True, False, False, True])
    expected = layer.compute(x, x, x, key_padding_mask=padding)

    async def main():
        one = await layer.compute_async(x, x, x, key_padding_mask=padding)
        many = await layer.compute_batch_async([x, x], [x, x], [x, x], key_padding_mask=[padding, padding])
        return one, many

    one, many = asyncio.run(main())
    for out in (one, *many):
        np.testing.assert_array_equal(out.values, expected.values)


# ---------------------------------------------------------------------------------------------
# Construction, properties, pickling


@pytest.mark.parametrize(("add_bias_kv", "add_zero_attn"), list(itertools.product([False, True], repeat=2)))
def test_options_are_properties_the_constructor_takes_back(rng, add_bias_kv, add_zero_attn):
    layer = rv.MultiHeadAttention.from_torch(module(2, 8, 5, 3, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn))
    options = {name: getattr(layer, name) for name in ("embed_dim", "kdim", "vdim", "add_bias_kv", "add_zero_attn")}
    rebuilt = rv.MultiHeadAttention(layer.config, **options)
    rebuilt.set_weights(layer.get_weights())
    assert repr(rebuilt) == repr(layer)
    assert f"add_bias_kv={add_bias_kv}, add_zero_attn={add_zero_attn}" in repr(layer)
    q, kv = randn(rng, 3, 8), randn(rng, 4, 5)
    v = randn(rng, 4, 3)
    np.testing.assert_array_equal(rebuilt.compute(q, kv, v).values, layer.compute(q, kv, v).values)
    clone = pickle.loads(pickle.dumps(layer))
    assert (clone.add_bias_kv, clone.add_zero_attn) == (add_bias_kv, add_zero_attn)
    np.testing.assert_array_equal(clone.compute(q, kv, v).weights, layer.compute(q, kv, v).weights)


def test_old_pickles_still_load(rng):
    """A state of 5 entries (before add_bias_kv / add_zero_attn) gives a layer without them."""
    layer = rv.MultiHeadAttention.from_torch(module(2, 8))
    state = layer.__getstate__()
    assert len(state) == 7
    old = rv.MultiHeadAttention.__new__(rv.MultiHeadAttention)
    old.__setstate__(state[:5])
    assert (old.add_bias_kv, old.add_zero_attn) == (False, False)
    x = randn(rng, 3, 8)
    np.testing.assert_array_equal(old.compute(x, x, x).values, layer.compute(x, x, x).values)
    with pytest.raises(rv.InvalidInputError, match="corrupt"):
        old.__setstate__(state[:6])


def test_bias_kv_defaults_to_zeros_and_is_set_by_name(rng):
    layer = rv.MultiHeadAttention({"num_heads": 2, "use_bias": False}, embed_dim=8, add_bias_kv=True)
    w = layer.get_weights()
    assert list(w) == ["in_proj_weight", "bias_k", "bias_v", "out_proj.weight"]
    np.testing.assert_array_equal(w["bias_k"], 0.0)
    w["bias_k"] = randn(rng, 1, 1, 8)
    with pytest.raises(rv.InvalidInputError, match=r"bias_v"):
        layer.set_weights({k: a for k, a in w.items() if k != "bias_v"})
    with pytest.raises(rv.InvalidInputError, match=r"bias_k.*shape"):
        layer.set_weights({**w, "bias_k": randn(rng, 8)})
    np.testing.assert_array_equal(layer.get_weights()["bias_k"], 0.0)  # unchanged
    layer.set_weights(w)
    np.testing.assert_array_equal(layer.get_weights()["bias_k"], w["bias_k"])
    plain = rv.MultiHeadAttention({"num_heads": 2, "use_bias": False}, embed_dim=8)
    with pytest.raises(rv.InvalidInputError, match="add_bias_kv=True"):
        plain.set_weights(w)


def test_set_weights_takes_tensors_that_require_grad(rng):
    m = module(2, 8, add_bias_kv=True)
    layer = rv.MultiHeadAttention({"num_heads": 2}, embed_dim=8, add_bias_kv=True)
    params = dict(m.named_parameters())
    assert all(p.requires_grad for p in params.values())
    layer.set_weights(params)
    for name, p in params.items():
        np.testing.assert_array_equal(layer.get_weights()[name], p.detach().numpy())


# ---------------------------------------------------------------------------------------------
# from_torch: what it reproduces, accepts and refuses


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_from_torch_reproduces_config_and_accepts_dropout_and_batch_first(rng, batch_first, dropout):
    torch.manual_seed(1)
    m = torch.nn.MultiheadAttention(12, 3, dropout=dropout, kdim=7, vdim=5, batch_first=batch_first, bias=False).eval()
    layer = rv.MultiHeadAttention.from_torch(m)
    assert (layer.embed_dim, layer.num_heads, layer.head_dim, layer.kdim, layer.vdim) == (12, 3, 4, 7, 5)
    assert layer.config.use_bias is False and layer.config.dropout == pytest.approx(dropout)
    q, k, v = randn(rng, 4, 12), randn(rng, 6, 7), randn(rng, 6, 5)
    with torch.no_grad():
        t = [torch.from_numpy(a).unsqueeze(0 if batch_first else 1) for a in (q, k, v)]
        ref = m(*t)[0].squeeze(0 if batch_first else 1).numpy()
    np.testing.assert_allclose(layer.compute(q, k, v).values, ref, **TOL)


def test_from_torch_copies_weights(rng):
    m = module(2, 8)
    layer = rv.MultiHeadAttention.from_torch(m)
    with torch.no_grad():
        m.in_proj_weight.zero_()
    assert np.abs(layer.get_weights()["in_proj_weight"]).max() > 0


def test_from_torch_float64_module(rng):
    m = module(2, 8, add_bias_kv=True).double()
    layer = rv.MultiHeadAttention.from_torch(m)
    x = randn(rng, 5, 8)
    with torch.no_grad():
        ref = m(*(torch.from_numpy(x.astype(np.float64))[None],) * 3)[0][0].numpy()
    np.testing.assert_allclose(layer.compute(x, x, x).values, ref, **TOL)


class _WithScale(torch.nn.MultiheadAttention):
    def __init__(self) -> None:
        super().__init__(8, 2)
        self.temperature = torch.nn.Parameter(torch.ones(()))


class _WithBuffer(torch.nn.MultiheadAttention):
    def __init__(self) -> None:
        super().__init__(8, 2)
        self.register_buffer("rope", torch.zeros(4))


class _WithForward(torch.nn.MultiheadAttention):
    def forward(self, *args, **kwargs):  # type: ignore[override]
        return super().forward(*args, **kwargs)


class _WithChild(torch.nn.MultiheadAttention):
    def __init__(self) -> None:
        super().__init__(8, 2)
        self.norm = torch.nn.LayerNorm(8, elementwise_affine=False)


def _hooked():
    m = torch.nn.MultiheadAttention(8, 2)
    m.register_forward_hook(lambda *a: None)
    return m


def _half_bias():
    m = torch.nn.MultiheadAttention(8, 2)
    m.out_proj.bias = None
    return m


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_WithScale, "'temperature'"),
        (_WithBuffer, "'rope'"),
        (lambda: _WithForward(8, 2), "overrides forward"),
        (_WithChild, "submodule 'norm'"),
        (_hooked, "forward_hooks"),
        (_half_bias, "in_proj_bias but no out_proj.bias"),
        (lambda: torch.nn.Linear(8, 8), "torch.nn.MultiheadAttention, got Linear"),
        (lambda: "module", "got str"),
    ],
)
def test_from_torch_refuses_what_it_cannot_reproduce(make, match):
    with pytest.raises(rv.InvalidConfigError, match=match):
        rv.MultiHeadAttention.from_torch(make())
