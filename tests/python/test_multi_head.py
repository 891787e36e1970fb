"""MultiHeadAttention (docs/contract.md §4): a float64 NumPy reference and torch.nn.MultiheadAttention
(eval mode, batch_first) with the same weights, on every SIMD backend; weights under torch's
state_dict names; typed errors; dropout, batch, async, pickling and threads."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import randn
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import softmax_rows

import ruvector as rv

TOL = {"rtol": 1e-4, "atol": 2e-5}


# ---------------------------------------------------------------------------------------------
# Independent reference (float64, plain NumPy)


def random_weights(rng, e, kdim, vdim, *, bias=True, packed=True):
    """torch state_dict names and shapes, random values (biases too, never zeros)."""
    scale = 1.0 / np.sqrt(max(e, kdim, vdim))
    w = {}
    if packed:
        w["in_proj_weight"] = randn(rng, 3 * e, e) * scale
    else:
        w["q_proj_weight"] = randn(rng, e, e) * scale
        w["k_proj_weight"] = randn(rng, e, kdim) * scale
        w["v_proj_weight"] = randn(rng, e, vdim) * scale
    if bias:
        w["in_proj_bias"] = randn(rng, 3 * e) * 0.5
    w["out_proj.weight"] = randn(rng, e, e) * scale
    if bias:
        w["out_proj.bias"] = randn(rng, e) * 0.5
    return {name: a.astype(np.float32) for name, a in w.items()}


def allowed_pairs(lq, lk, mask=None, causal=False):
    allowed = np.ones((lq, lk), dtype=bool)
    if mask is not None:
        allowed &= mask if mask.dtype == bool else mask != -np.inf
    if causal:
        allowed &= np.tri(lq, lk, dtype=bool)
    return allowed


def mha_reference(q, k, v, weights, heads, *, mask=None, causal=False, scale=None):
    """values [Lq, E], per-head weights [H, Lq, Lk]; a row with nothing allowed gives zeros."""
    f64 = {name: np.asarray(a, np.float64) for name, a in weights.items()}
    if "in_proj_weight" in f64:
        wq, wk, wv = np.split(f64["in_proj_weight"], 3)
    else:
        wq, wk, wv = f64["q_proj_weight"], f64["k_proj_weight"], f64["v_proj_weight"]
    e = wq.shape[0]
    bq, bk, bv = np.split(f64.get("in_proj_bias", np.zeros(3 * e)), 3)
    qp = np.asarray(q, np.float64) @ wq.T + bq
    kp = np.asarray(k, np.float64) @ wk.T + bk
    vp = np.asarray(v, np.float64) @ wv.T + bv
    hd = e // heads
    scale = 1.0 / np.sqrt(hd) if scale is None else scale
    allowed = allowed_pairs(q.shape[0], k.shape[0], mask, causal)
    additive = mask if mask is not None and mask.dtype != bool else 0.0
    context = np.zeros((q.shape[0], e))
    per_head = np.zeros((heads, q.shape[0], k.shape[0]))
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        scores = scale * (qp[:, cols] @ kp[:, cols].T) + additive
        per_head[h] = softmax_rows(scores, allowed)
        context[:, cols] = per_head[h] @ vp[:, cols]
    values = context @ f64["out_proj.weight"].T + f64.get("out_proj.bias", 0.0)
    values[~allowed.any(axis=1)] = 0.0
    return values, per_head


def layer(heads, e, kdim=None, vdim=None, *, bias=True, **config):
    return rv.MultiHeadAttention({"num_heads": heads, "use_bias": bias, **config}, embed_dim=e, kdim=kdim, vdim=vdim)


SHAPES = [  # (H, E, kdim, vdim, Lq, Lk)
    (1, 1, 1, 1, 1, 1),
    (1, 4, 4, 4, 3, 5),
    (2, 6, 6, 6, 7, 13),
    (3, 12, 5, 7, 9, 11),
    (4, 32, 32, 32, 65, 257),
    (8, 64, 20, 48, 33, 70),
    (8, 128, 128, 128, 130, 300),
    (6, 600, 600, 600, 9, 17),  # wide projections: computed in column slices
]


# ---------------------------------------------------------------------------------------------
# Numbers against the NumPy reference


@pytest.mark.parametrize(("heads", "e", "kdim", "vdim", "lq", "lk"), SHAPES)
def test_default_weights_are_split_heads_attention(backend, rng, heads, e, kdim, vdim, lq, lk):
    q, k, v = randn(rng, lq, e), randn(rng, lk, kdim), randn(rng, lk, vdim)
    mha = layer(heads, e, kdim, vdim)
    identity = {
        "q_proj_weight": np.eye(e),
        "k_proj_weight": np.eye(e, kdim),
        "v_proj_weight": np.eye(e, vdim),
        "out_proj.weight": np.eye(e),
    }
    ref_v, ref_w = mha_reference(q, k, v, identity, heads)
    out = mha.compute(q, k, v)
    assert out.values.dtype == np.float32 and out.values.shape == (lq, e)
    np.testing.assert_allclose(out.values, ref_v, **TOL)
    np.testing.assert_allclose(out.weights, ref_w.mean(axis=0), **TOL)


@pytest.mark.parametrize(("heads", "e", "kdim", "vdim", "lq", "lk"), SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_random_weights_match_numpy(backend, rng, heads, e, kdim, vdim, lq, lk, bias):
    q, k, v = randn(rng, lq, e), randn(rng, lk, kdim), randn(rng, lk, vdim)
    mha = layer(heads, e, kdim, vdim, bias=bias)
    w = random_weights(rng, e, kdim, vdim, bias=bias, packed=kdim == vdim == e)
    mha.set_weights(w)
    ref_v, ref_w = mha_reference(q, k, v, w, heads)
    out = mha.compute(q, k, v, average_weights=False)
    np.testing.assert_allclose(out.values, ref_v, **TOL)
    assert out.weights.shape == (heads, lq, lk)
    np.testing.assert_allclose(out.weights, ref_w, **TOL)
    streamed = mha.compute(q, k, v, need_weights=False)
    assert streamed.weights is None
    np.testing.assert_allclose(streamed.values, ref_v, **TOL)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("kind", ["bool", "additive", "causal", "bool+causal", "additive+causal"])
def test_masks_match_numpy(backend, rng, need_weights, kind):
    heads, e, lq, lk = 4, 24, 37, 300
    x, mem = randn(rng, lq, e), randn(rng, lk, e)
    mask = None
    if "bool" in kind:
        mask = rng.random((lq, lk)) > 0.4
        mask[3] = False  # fully masked
    elif "additive" in kind:
        mask = rng.standard_normal((lq, lk)).astype(np.float32)
        mask[rng.random((lq, lk)) < 0.3] = -np.inf
        mask[5] = -np.inf  # fully masked
    causal = "causal" in kind
    mha = layer(heads, e)
    w = random_weights(rng, e, e, e)
    mha.set_weights(w)
    ref_v, ref_w = mha_reference(x, mem, mem, w, heads, mask=mask, causal=causal)
    out = mha.compute(x, mem, mem, mask=mask, causal=causal, need_weights=need_weights)
    np.testing.assert_allclose(out.values, ref_v, **TOL)
    if need_weights:
        np.testing.assert_allclose(out.weights, ref_w.mean(axis=0), **TOL)
    if mask is not None:
        assert np.all(np.isfinite(out.values))


def test_self_attention_and_shared_key_value(backend, rng):
    # query is key is value (one fused in-projection) and key is value (one GEMM for both)
    heads, e = 4, 32
    x, mem = randn(rng, 50, e), randn(rng, 80, e)
    mha = layer(heads, e)
    w = random_weights(rng, e, e, e)
    mha.set_weights(w)
    for q, k, v in ((x, x, x), (x, mem, mem), (x, mem, mem.copy()), (x[:20], x, x)):
        ref_v, ref_w = mha_reference(q, k, v, w, heads)
        out = mha.compute(q, k, v)
        np.testing.assert_allclose(out.values, ref_v, **TOL)
        np.testing.assert_allclose(out.weights, ref_w.mean(axis=0), **TOL)


def test_strided_and_converted_inputs(backend, rng):
    heads, e = 2, 8
    mha = layer(heads, e)
    w = random_weights(rng, e, e, e)
    mha.set_weights(w)
    big = randn(rng, 30, 3 * e)
    q, k, v = big[:, :e], big[:, e : 2 * e], big[:, 2 * e :]  # non-contiguous views
    ref_v, _ = mha_reference(q, k, v, w, heads)
    np.testing.assert_allclose(mha.compute(q, k, v).values, ref_v, **TOL)
    np.testing.assert_allclose(mha.compute(q.astype(np.float64), k.tolist(), v).values, ref_v, **TOL)


def test_scale_multiplies_scores(backend, rng):
    heads, e = 2, 16
    q, k = randn(rng, 10, e), randn(rng, 20, e)
    mha = layer(heads, e, scale=0.37)
    w = random_weights(rng, e, e, e)
    mha.set_weights(w)
    ref_v, _ = mha_reference(q, k, k, w, heads, scale=0.37)
    out = mha.compute(q, k, k)
    np.testing.assert_allclose(out.values, ref_v, **TOL)
    assert out.metadata["scale"] == pytest.approx(0.37)
    assert layer(heads, e).compute(q, k, k).metadata["scale"] == pytest.approx(1 / np.sqrt(e // heads))


def test_fully_masked_rows_give_zeros(backend, rng):
    heads, e = 2, 8
    q, k = randn(rng, 6, e), randn(rng, 9, e)
    mha = layer(heads, e)
    mha.set_weights(random_weights(rng, e, e, e))  # non-zero out_proj.bias: still zeros
    mask = rng.random((6, 9)) > 0.5
    mask[:, 0] = True
    mask[[1, 4]] = False
    for need_weights in (True, False):
        for average in (True, False):
            out = mha.compute(q, k, k, mask=mask, need_weights=need_weights, average_weights=average)
            assert np.all(np.isfinite(out.values))
            np.testing.assert_array_equal(out.values[[1, 4]], 0.0)
            assert not np.any(out.values[[0, 2, 3, 5]] == 0.0)
            if need_weights:
                np.testing.assert_array_equal(out.weights[..., [1, 4], :], 0.0)


def test_empty_inputs(backend, rng):
    mha = layer(2, 8)
    mha.set_weights(random_weights(rng, 8, 8, 8))
    out = mha.compute(np.zeros((0, 8), np.float32), randn(rng, 3, 8), randn(rng, 3, 8))
    assert out.values.shape == (0, 8) and out.weights.shape == (0, 3)
    out = mha.compute(
        randn(rng, 3, 8), np.zeros((0, 8), np.float32), np.zeros((0, 8), np.float32), average_weights=False
    )
    np.testing.assert_array_equal(out.values, np.zeros((3, 8)))  # nothing to attend to
    assert out.weights.shape == (2, 3, 0)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lk", [5, 300])
def test_nan_propagates(backend, rng, need_weights, causal, lk):
    mha = layer(2, 8)
    w = random_weights(rng, 8, 8, 8)
    mha.set_weights(w)
    q, k = randn(rng, 4, 8), randn(rng, lk, 8)
    q[1, 3] = np.nan
    out = mha.compute(q, k, k, causal=causal, need_weights=need_weights)
    assert np.all(np.isnan(out.values[1]))
    assert np.all(np.isfinite(np.delete(out.values, 1, axis=0)))
    ref_v, _ = mha_reference(q, k, k, w, 2, causal=causal)
    np.testing.assert_allclose(out.values, ref_v, **TOL)


def test_backends_agree(rng):
    mha = layer(4, 64)
    mha.set_weights(random_weights(rng, 64, 64, 64))
    q, k = randn(rng, 100, 64), randn(rng, 200, 64)
    outputs = {}
    for name in rv._native._available_backends():
        rv.set_simd_backend(name)
        try:
            outputs[name] = mha.compute(q, k, k, causal=True).values
        finally:
            rv.set_simd_backend("auto")
    for values in outputs.values():
        np.testing.assert_allclose(values, outputs["scalar"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Parity with torch.nn.MultiheadAttention


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def torch_layer(torch, heads, e, kdim=None, vdim=None, *, bias=True, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.MultiheadAttention(e, heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=True).eval()
    with torch.no_grad():
        for p in m.parameters():  # random biases too (torch starts them at zero)
            p.copy_(torch.randn_like(p) / np.sqrt(p.shape[-1]))
    return m


def torch_forward(
    torch, m, q, k, v, *, mask=None, causal=False, key_padding_mask=None, need_weights=True, average_weights=True
):
    """torch's module with this library's mask turned into torch's (True = blocked; causal as the
    mask torch requires with is_causal); key_padding_mask [Lk] is torch's already."""
    lq, lk = q.shape[0], k.shape[0]
    attn_mask = None
    if mask is not None and mask.dtype != bool:
        attn_mask = mask.copy()
        if causal:
            attn_mask[~np.tri(lq, lk, dtype=bool)] = -np.inf
    elif mask is not None or causal:
        attn_mask = ~allowed_pairs(lq, lk, mask, causal)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates a bool key_padding_mask with a float attn_mask
        out, weights = m(
            *(torch.from_numpy(np.ascontiguousarray(x))[None] for x in (q, k, v)),
            attn_mask=None if attn_mask is None else torch.from_numpy(attn_mask),
            key_padding_mask=None if key_padding_mask is None else torch.from_numpy(key_padding_mask)[None],
            need_weights=need_weights,
            average_attn_weights=average_weights,
        )
    return out[0].numpy(), None if weights is None else weights[0].numpy()


def from_torch(m, heads):
    mha = rv.MultiHeadAttention(
        {"num_heads": heads, "use_bias": m.in_proj_bias is not None}, embed_dim=m.embed_dim, kdim=m.kdim, vdim=m.vdim
    )
    mha.set_weights({k: v.numpy() for k, v in m.state_dict().items()})
    return mha


@pytest.mark.parametrize(
    ("heads", "e", "kdim", "vdim", "lq", "lk"),
    [
        (1, 4, 4, 4, 1, 1),
        (2, 8, 8, 8, 7, 13),
        (3, 12, 5, 7, 9, 11),
        (4, 32, 32, 32, 65, 257),
        (8, 64, 20, 96, 40, 70),
        (8, 512, 512, 512, 20, 30),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(backend, torch, rng, heads, e, kdim, vdim, lq, lk, bias):
    m = torch_layer(torch, heads, e, kdim, vdim, bias=bias)
    mha = from_torch(m, heads)
    q, k, v = randn(rng, lq, e), randn(rng, lk, kdim), randn(rng, lk, vdim)
    for average in (True, False):
        ref_v, ref_w = torch_forward(torch, m, q, k, v, average_weights=average)
        out = mha.compute(q, k, v, average_weights=average)
        np.testing.assert_allclose(out.values, ref_v, **TOL)
        np.testing.assert_allclose(out.weights, ref_w, **TOL)
    ref_v, _ = torch_forward(torch, m, q, k, v, need_weights=False)
    np.testing.assert_allclose(mha.compute(q, k, v, need_weights=False).values, ref_v, **TOL)
    if kdim == vdim == e:  # self-attention: one fused in-projection (torch: its fast path without weights)
        for need_weights in (True, False):
            ref_v, ref_w = torch_forward(torch, m, q, q, q, need_weights=need_weights)
            out = mha.compute(q, q, q, need_weights=need_weights)
            np.testing.assert_allclose(out.values, ref_v, **TOL)
            if need_weights:
                np.testing.assert_allclose(out.weights, ref_w, **TOL)


@pytest.mark.parametrize("kind", ["bool", "additive", "causal", "bool+causal", "additive+causal"])
@pytest.mark.parametrize("self_attention", [True, False])
def test_masks_match_torch(backend, torch, rng, kind, self_attention):
    heads, e, lq = 4, 32, 45
    lk = lq if self_attention else 100
    m = torch_layer(torch, heads, e)
    mha = from_torch(m, heads)
    x = randn(rng, lq, e)
    mem = x if self_attention else randn(rng, lk, e)
    mask = None
    if "bool" in kind:
        mask = rng.random((lq, lk)) > 0.4
        mask[:, 0] = True  # torch gives NaN for a fully masked row
    elif "additive" in kind:
        mask = rng.standard_normal((lq, lk)).astype(np.float32)
        mask[rng.random((lq, lk)) < 0.3] = -np.inf
        mask[:, 0] = 0.0
    causal = "causal" in kind
    for need_weights in (True, False):
        ref_v, ref_w = torch_forward(torch, m, x, mem, mem, mask=mask, causal=causal, need_weights=need_weights)
        out = mha.compute(x, mem, mem, mask=mask, causal=causal, need_weights=need_weights)
        np.testing.assert_allclose(out.values, ref_v, **TOL)
        if need_weights:
            np.testing.assert_allclose(out.weights, ref_w, **TOL)


def test_fully_masked_row_zero_where_torch_gives_nan(torch, rng):
    m = torch_layer(torch, 2, 8)
    mha = from_torch(m, 2)
    x = randn(rng, 5, 8)
    mask = np.ones((5, 5), bool)
    mask[2] = False
    ref_v, ref_w = torch_forward(torch, m, x, x, x, mask=mask)
    out = mha.compute(x, x, x, mask=mask)
    assert np.all(np.isnan(ref_v[2])) and np.all(np.isnan(ref_w[2]))
    np.testing.assert_array_equal(out.values[2], 0.0)
    np.testing.assert_array_equal(out.weights[2], 0.0)
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(out.values[keep], ref_v[keep], **TOL)
    np.testing.assert_allclose(out.weights[keep], ref_w[keep], **TOL)


@pytest.mark.parametrize(
    ("kdim", "vdim", "bias"), [(None, None, True), (None, None, False), (5, 7, True), (5, None, False)]
)
def test_state_dict_names_and_shapes_are_torchs(torch, kdim, vdim, bias):
    m = torch_layer(torch, 2, 8, kdim, vdim, bias=bias)
    mha = rv.MultiHeadAttention({"num_heads": 2, "use_bias": bias}, embed_dim=8, kdim=kdim, vdim=vdim)
    theirs = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    ours = mha.get_weights()
    assert list(ours) == list(theirs)
    assert {k: a.shape for k, a in ours.items()} == theirs
    mha.set_weights({k: v.numpy() for k, v in m.state_dict().items()})
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(mha.get_weights()[name], value.numpy())
    mha.set_weights(m.state_dict())  # tensors work too (read through numpy.asarray)


# ---------------------------------------------------------------------------------------------
# Weights


def test_default_weights_identity_and_zero_bias():
    mha = rv.MultiHeadAttention({"num_heads": 2}, embed_dim=6, kdim=4, vdim=9)
    w = mha.get_weights()
    assert list(w) == [
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
        "in_proj_bias",
        "out_proj.weight",
        "out_proj.bias",
    ]
    np.testing.assert_array_equal(w["q_proj_weight"], np.eye(6))
    np.testing.assert_array_equal(w["k_proj_weight"], np.eye(6, 4))
    np.testing.assert_array_equal(w["v_proj_weight"], np.eye(6, 9))
    np.testing.assert_array_equal(w["out_proj.weight"], np.eye(6))
    np.testing.assert_array_equal(w["in_proj_bias"], np.zeros(18))
    np.testing.assert_array_equal(w["out_proj.bias"], np.zeros(6))
    assert all(a.dtype == np.float32 for a in w.values())
    packed = rv.MultiHeadAttention({"num_heads": 2, "use_bias": False}, embed_dim=6).get_weights()
    assert list(packed) == ["in_proj_weight", "out_proj.weight"]
    np.testing.assert_array_equal(packed["in_proj_weight"], np.vstack([np.eye(6)] * 3))


def test_get_weights_returns_copies(rng):
    mha = layer(2, 8)
    w = mha.get_weights()
    w["out_proj.weight"][:] = 5.0
    np.testing.assert_array_equal(mha.get_weights()["out_proj.weight"], np.eye(8))
    new = random_weights(rng, 8, 8, 8)
    mha.set_weights(new)
    new["out_proj.weight"][:] = 0.0  # the layer holds its own copy
    assert np.any(mha.get_weights()["out_proj.weight"] != 0.0)


def test_set_weights_converts_dtypes(rng):
    mha = layer(2, 8)
    w64 = {k: a.astype(np.float64) for k, a in random_weights(rng, 8, 8, 8).items()}
    mha.set_weights(w64)
    for k, a in mha.get_weights().items():
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, w64[k], rtol=1e-7)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda w: w.update({"in_proj_weight": np.ones((24, 9), np.float32)}), r"in_proj_weight.*\[24, 8\]"),
        (lambda w: w.update({"in_proj_bias": np.ones((23,), np.float32)}), r"in_proj_bias.*\[24\]"),
        (lambda w: w.update({"in_proj_bias": np.ones((1, 24), np.float32)}), r"in_proj_bias.*\[24\]"),
        (lambda w: w.update({"out_proj.weight": np.ones((8, 8, 1), np.float32)}), r"out_proj.weight.*\[8, 8\]"),
        (lambda w: w.update({"out_proj.weigth": np.ones((8, 8), np.float32)}), r"unknown weight 'out_proj.weigth'"),
        (lambda w: w.update({"q_proj_weight": np.ones((8, 8), np.float32)}), r"q_proj_weight.*packed"),
        (lambda w: w.update({"bias_k": np.ones((1, 1, 8), np.float32)}), r"bias_k.*add_bias_kv"),
        (lambda w: w.pop("out_proj.bias"), r"missing weight 'out_proj.bias' \[8\].*use_bias=False"),
        (lambda w: w.update({"out_proj.bias": None}), r"out_proj.bias"),
        (lambda w: w.update({"out_proj.bias": "zeros"}), r"out_proj.bias"),
        (lambda w: w.update({"out_proj.bias": np.ones(8, np.complex64)}), r"out_proj.bias"),
        (lambda w: w.update({3: np.ones(8, np.float32)}), r"names must be strings"),
    ],
)
def test_bad_weights_raise_and_leave_layer_unchanged(rng, change, match):
    mha = layer(2, 8)
    w = random_weights(rng, 8, 8, 8)
    mha.set_weights(w)
    x = randn(rng, 5, 8)
    before = mha.compute(x, x, x).values
    bad = {k: a * 2 for k, a in w.items()}  # the good part would change the numbers
    change(bad)
    with pytest.raises(rv.InvalidInputError, match=match):
        mha.set_weights(bad)
    np.testing.assert_array_equal(mha.compute(x, x, x).values, before)
    for k, a in mha.get_weights().items():
        np.testing.assert_array_equal(a, w[k])


def test_bias_keys_on_a_layer_without_bias():
    mha = layer(2, 8, bias=False)
    w = {
        "in_proj_weight": np.ones((24, 8), np.float32),
        "out_proj.weight": np.ones((8, 8), np.float32),
        "in_proj_bias": np.ones(24, np.float32),
    }
    with pytest.raises(rv.InvalidInputError, match="use_bias=False"):
        mha.set_weights(w)


def test_separate_layout_rejects_packed_name():
    mha = layer(2, 8, 4, 4)
    w = mha.get_weights()
    w["in_proj_weight"] = np.ones((24, 8), np.float32)
    with pytest.raises(rv.InvalidInputError, match="q_proj_weight"):
        mha.set_weights(w)


@pytest.mark.parametrize("bad", [None, [1, 2], "in_proj_weight", np.ones(3)])
def test_set_weights_needs_a_mapping(bad):
    with pytest.raises(rv.InvalidInputError, match="dict"):
        layer(2, 8).set_weights(bad)


# ---------------------------------------------------------------------------------------------
# Config and input errors


def test_embed_dim_defaults_and_head_size():
    assert layer(2, None, head_dim=5).embed_dim == 10
    mha = rv.MultiHeadAttention({"num_heads": 4, "head_dim": 3}, embed_dim=32)
    assert (mha.embed_dim, mha.num_heads, mha.head_dim, mha.kdim, mha.vdim) == (32, 4, 8, 32, 32)
    x = np.ones((2, 32), np.float32)
    md = mha.compute(x, x, x).metadata
    assert md["attention_type"] == "multi_head" and md["num_heads"] == 4 and md["head_dim"] == 8
    assert rv.MultiHeadAttention().embed_dim == 512  # AttentionConfig defaults: 8 heads of 64
    assert "embed_dim=32" in repr(mha)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embed_dim": 10}, "divisible by num_heads"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"embed_dim": -4}, "embed_dim"),
        ({"embed_dim": 12, "kdim": 0}, "kdim"),
        ({"embed_dim": 12, "vdim": -1}, "vdim"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(rv.InvalidConfigError, match=match):
        rv.MultiHeadAttention({"num_heads": 3}, **kwargs)


def test_bad_config_values():
    with pytest.raises(rv.InvalidConfigError, match="num_heads"):
        rv.MultiHeadAttention({"num_heads": 0})
    with pytest.raises(rv.InvalidConfigError, match="unknown config key"):
        rv.MultiHeadAttention({"heads": 2})
    with pytest.raises(TypeError):
        rv.MultiHeadAttention(None, embed_dim="8")


def test_wrong_widths_and_shapes(rng):
    mha = layer(2, 8, 4, 6)
    q, k, v = randn(rng, 3, 8), randn(rng, 5, 4), randn(rng, 5, 6)
    with pytest.raises(rv.DimensionMismatchError, match="query has 7 columns, expected embed_dim = 8") as info:
        mha.compute(randn(rng, 3, 7), k, v)
    assert (info.value.expected, info.value.actual) == (8, 7)
    with pytest.raises(rv.DimensionMismatchError, match="key has 8 columns, expected kdim = 4") as info:
        mha.compute(q, q, v)
    assert (info.value.expected, info.value.actual) == (4, 8)
    with pytest.raises(rv.DimensionMismatchError, match="value has 4 columns, expected vdim = 6"):
        mha.compute(q, k, k)
    with pytest.raises(rv.DimensionMismatchError, match="value has 4 rows, key has 5"):
        mha.compute(q, k, v[:4])
    with pytest.raises(rv.DimensionMismatchError, match="mask"):
        mha.compute(q, k, v, mask=np.ones((3, 4), bool))
    with pytest.raises(rv.DimensionMismatchError, match="2-D"):
        mha.compute(q[None], k, v)
    with pytest.raises(rv.InvalidInputError, match="astype"):
        mha.compute(q, k, v, mask=np.ones((3, 5), np.int64))
    with pytest.raises(TypeError):
        mha.compute(q, k, v, average_weights="no")


@pytest.mark.parametrize("bad", [None, "abc", {"a": 1}, 3 + 4j, [[1, 2], [3]], np.ones((4, 8), np.complex64)])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_non_arrays_raise_invalid_input(bad, position):
    x = np.ones((4, 8), np.float32)
    args = [x, x, x]
    args[position] = bad
    with pytest.raises(rv.InvalidInputError, match=["query", "key", "value"][position]):
        layer(2, 8).compute(*args)


def test_huge_weights_rejected_before_allocating():
    q = np.ones((200_000, 8), np.float32)
    with pytest.raises((rv.InvalidInputError, MemoryError), match="need_weights=False"):
        layer(8, 8).compute(q, q, q)


@settings(max_examples=40, deadline=None)
@given(
    lq=st.integers(0, 5),
    lk=st.integers(0, 5),
    qd=st.integers(0, 7),
    kd=st.integers(0, 5),
    vd=st.integers(0, 5),
    vrows=st.integers(0, 5),
    fill=st.sampled_from([0.5, np.nan, np.inf, -np.inf, 1e30]),
)
def test_arbitrary_shapes_never_crash(lq, lk, qd, kd, vd, vrows, fill):
    mha = rv.MultiHeadAttention({"num_heads": 2}, embed_dim=6, kdim=3, vdim=4)
    rng = np.random.default_rng(lq * 100 + lk * 10 + qd)
    q, k, v = randn(rng, lq, qd), randn(rng, lk, kd), randn(rng, vrows, vd)
    if q.size:
        q.flat[0] = fill
    try:
        out = mha.compute(q, k, v, average_weights=bool(lq % 2))
    except rv.DimensionMismatchError:
        assert (qd, kd, vd, vrows) != (6, 3, 4, lk)
        return
    assert (qd, kd, vd, vrows) == (6, 3, 4, lk)
    assert out.values.shape == (lq, 6)
    assert out.weights.shape == ((lq, lk) if lq % 2 else (2, lq, lk))


# ---------------------------------------------------------------------------------------------
# Dropout


class TestDropout:
    def test_inference_is_deterministic(self, rng):
        mha = layer(2, 8, dropout=0.5)
        x = randn(rng, 20, 8)
        a, b = mha.compute(x, x, x), mha.compute(x, x, x)
        np.testing.assert_array_equal(a.values, b.values)
        ref_v, _ = mha_reference(x, x, x, mha.get_weights(), 2)
        np.testing.assert_allclose(a.values, ref_v, **TOL)

    def test_training_drops_per_head_and_values_use_the_dropped_weights(self, backend, rng):
        heads, e, p = 4, 16, 0.3
        mha = layer(heads, e, dropout=p, seed=7)
        w = random_weights(rng, e, e, e)
        mha.set_weights(w)
        q, k = randn(rng, 64, e), randn(rng, 128, e)
        out = mha.compute(q, k, k, training=True, average_weights=False)
        _, ref_w = mha_reference(q, k, k, w, heads)
        dropped = out.weights == 0
        assert 0.25 < dropped.mean() < 0.35
        np.testing.assert_allclose(out.weights[~dropped], ref_w[~dropped] / (1 - p), rtol=2e-5, atol=1e-7)
        for h in range(1, heads):  # every head has a mask of its own
            assert not np.array_equal(dropped[0], dropped[h])
        # values = out_proj(concat_h(dropped W_h · V_h))
        wv = np.split(w["in_proj_weight"].astype(np.float64), 3)[2]
        vp = k @ wv.T + np.split(w["in_proj_bias"], 3)[2]
        hd = e // heads
        ctx = np.hstack([out.weights[h] @ vp[:, h * hd : (h + 1) * hd] for h in range(heads)])
        expected = ctx @ w["out_proj.weight"].T + w["out_proj.bias"]
        np.testing.assert_allclose(out.values, expected, rtol=1e-4, atol=1e-4)

    def test_seeded_objects_replay_their_masks(self, rng):
        x = randn(rng, 30, 8)
        a, b = layer(2, 8, dropout=0.5, seed=3), layer(2, 8, dropout=0.5, seed=3)
        first_a, second_a = (a.compute(x, x, x, training=True, average_weights=False) for _ in range(2))
        first_b = b.compute(x, x, x, training=True, average_weights=False)
        np.testing.assert_array_equal(first_a.weights, first_b.weights)
        assert not np.array_equal(first_a.weights, second_a.weights)
        other = layer(2, 8, dropout=0.5, seed=4).compute(x, x, x, training=True, average_weights=False)
        assert not np.array_equal(first_a.weights, other.weights)

    def test_streaming_training_matches_weights_path(self, backend, rng):
        q, k = randn(rng, 70, 16), randn(rng, 300, 16)
        a, b = layer(2, 16, dropout=0.2, seed=11), layer(2, 16, dropout=0.2, seed=11)
        with_w = a.compute(q, k, k, training=True)
        streamed = b.compute(q, k, k, training=True, need_weights=False)
        np.testing.assert_allclose(streamed.values, with_w.values, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Batch, async, pickling, threads


def trained_layer(rng, heads=2, e=8, kdim=None, vdim=None):
    mha = layer(heads, e, kdim, vdim)
    mha.set_weights(random_weights(rng, e, kdim or e, vdim or e, packed=kdim is None and vdim is None))
    return mha


def test_compute_batch_stacked_and_ragged(rng):
    mha = trained_layer(rng, 2, 8, 4, 6)
    qs, ks, vs = randn(rng, 5, 7, 8), randn(rng, 5, 9, 4), randn(rng, 5, 9, 6)
    outs = mha.compute_batch(qs, ks, vs, average_weights=False)
    assert len(outs) == 5
    for i, out in enumerate(outs):
        single = mha.compute(qs[i], ks[i], vs[i], average_weights=False)
        np.testing.assert_array_equal(out.values, single.values)
        np.testing.assert_array_equal(out.weights, single.weights)
    ragged_q = [randn(rng, n, 8) for n in (3, 1, 6)]
    ragged_k = [randn(rng, n, 4) for n in (2, 5, 4)]
    ragged_v = [randn(rng, n, 6) for n in (2, 5, 4)]
    masks = [rng.random((q.shape[0], k.shape[0])) > 0.3 for q, k in zip(ragged_q, ragged_k, strict=True)]
    calls = []
    outs = mha.compute_batch(
        ragged_q,
        ragged_k,
        ragged_v,
        mask=masks,
        causal=True,
        batch_config={"max_batch_size": 2},
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(2, 3), (3, 3)]
    for q, k, v, m, out in zip(ragged_q, ragged_k, ragged_v, masks, outs, strict=True):
        np.testing.assert_array_equal(out.values, mha.compute(q, k, v, mask=m, causal=True).values)


def test_bad_batch_item_raises_before_any_work(rng):
    mha = trained_layer(rng)
    qs = [randn(rng, 3, 8) for _ in range(4)]
    ks = [randn(rng, 5, 8) for _ in range(4)]
    ks[2] = randn(rng, 5, 7)
    calls = []
    with pytest.raises(rv.DimensionMismatchError, match="item 2") as info:
        mha.compute_batch(qs, ks, ks, progress=lambda d, t: calls.append(d))
    assert (info.value.expected, info.value.actual) == (8, 7)
    assert calls == []
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        mha.compute_batch(qs, ks[:3], ks[:3])


def test_async_calls(rng):
    mha = trained_layer(rng)
    x = randn(rng, 6, 16, 8)

    async def main():
        singles = await asyncio.gather(*(mha.compute_async(x[i], x[i], x[i], causal=True) for i in range(6)))
        batch = await mha.compute_batch_async(x, x, x, causal=True)
        with pytest.raises(rv.DimensionMismatchError):
            await mha.compute_async(x[0], x[0, :, :4], x[0])
        return singles, batch

    singles, batch = asyncio.run(main())
    for i in range(6):
        expected = mha.compute(x[i], x[i], x[i], causal=True)
        np.testing.assert_array_equal(singles[i].values, expected.values)
        np.testing.assert_array_equal(batch[i].weights, expected.weights)


@pytest.mark.parametrize(("kdim", "vdim", "bias"), [(None, None, True), (5, 3, False)])
def test_pickle_keeps_config_and_weights(rng, kdim, vdim, bias):
    mha = layer(2, 8, kdim, vdim, bias=bias, scale=0.3, seed=5, dropout=0.25)
    mha.set_weights(random_weights(rng, 8, kdim or 8, vdim or 8, bias=bias, packed=kdim is None))
    clone = pickle.loads(pickle.dumps(mha))
    assert type(clone) is rv.MultiHeadAttention
    assert clone.config == mha.config and (clone.embed_dim, clone.kdim, clone.vdim) == (8, kdim or 8, vdim or 8)
    for (k1, a1), (k2, a2) in zip(mha.get_weights().items(), clone.get_weights().items(), strict=True):
        assert k1 == k2
        np.testing.assert_array_equal(a1, a2)
    q, k, v = randn(rng, 5, 8), randn(rng, 7, kdim or 8), randn(rng, 7, vdim or 8)
    np.testing.assert_array_equal(clone.compute(q, k, v).values, mha.compute(q, k, v).values)
    batch = clone.compute_batch([q], [k], [v])  # the clone keeps the Python layer
    np.testing.assert_array_equal(batch[0].values, mha.compute(q, k, v).values)


def test_threads_share_one_layer(rng):
    mha = trained_layer(rng, 4, 32)
    inputs = [(randn(rng, 40, 32), randn(rng, 60, 32)) for _ in range(8)]
    expected = [mha.compute(q, k, k).values for q, k in inputs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda qk: mha.compute(qk[0], qk[1], qk[1]).values, inputs * 3))
    for i, values in enumerate(results):
        np.testing.assert_array_equal(values, expected[i % len(inputs)])


def test_set_weights_while_computing(rng):
    mha = trained_layer(rng, 2, 16)
    x = randn(rng, 50, 16)
    w_a = mha.get_weights()
    w_b = {k: a * 0.5 for k, a in w_a.items()}
    out_a = mha.compute(x, x, x).values
    mha.set_weights(w_b)
    out_b = mha.compute(x, x, x).values

    def writer():
        for i in range(100):
            mha.set_weights(w_a if i % 2 else w_b)

    with ThreadPoolExecutor(2) as pool:
        done = pool.submit(writer)
        results = [mha.compute(x, x, x).values for _ in range(100)]
        done.result()
    for values in results:  # one set of weights or the other, never a mix
        assert np.array_equal(values, out_a) or np.array_equal(values, out_b)


# ---------------------------------------------------------------------------------------------
# Identity projections (an untrained layer) skip their products; NaN/Inf still spread as torch's


def identity_torch_layer(torch, heads, e):
    m = torch.nn.MultiheadAttention(e, heads, batch_first=True).eval()
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.eye(e).repeat(3, 1))
        m.in_proj_bias.zero_()
        m.out_proj.weight.copy_(torch.eye(e))
        m.out_proj.bias.zero_()
    return m


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["none", "query", "key", "value", "self"])
def test_identity_layer_spreads_nan_and_inf_as_torch(backend, torch, rng, where, special):
    heads, e, lq, lk = 4, 32, 9, 13
    m = identity_torch_layer(torch, heads, e)
    mha = rv.MultiHeadAttention({"num_heads": heads}, embed_dim=e)  # default weights: the same identities
    q, k, v = randn(rng, lq, e), randn(rng, lk, e), randn(rng, lk, e)
    if where == "self":
        k = v = q
    if where in ("query", "self"):
        q[2, 5] = special
    if where == "key":
        k[3, 7] = special
    if where == "value":
        v[4, 30] = special
    # torch's path with weights: the one that spreads NaN as IEEE products do (its fused path
    # without weights returns finite rows for a NaN query, with any weights)
    ref_v, _ = torch_forward(torch, m, q, k, v, need_weights=True)
    for need_weights in (False, True):
        out = mha.compute(q, k, v, need_weights=need_weights).values
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref_v))
        np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref_v))
        np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref_v))
        finite = np.isfinite(ref_v)
        assert finite.any() or where != "none"
        np.testing.assert_allclose(out[finite], ref_v[finite], **TOL)


def test_identity_detected_from_set_weights_and_lost_with_other_weights(rng):
    heads, e = 4, 32
    q, k, v = randn(rng, 20, e), randn(rng, 25, e), randn(rng, 25, e)
    default = rv.MultiHeadAttention({"num_heads": heads}, embed_dim=e)
    expected = default.compute(q, k, v).values
    mha = rv.MultiHeadAttention({"num_heads": heads}, embed_dim=e)
    identity = mha.get_weights()
    mha.set_weights(random_weights(rng, e, e, e, bias=True, packed=True))
    assert not np.allclose(mha.compute(q, k, v).values, expected, atol=1e-3)
    mha.set_weights(identity)
    np.testing.assert_array_equal(mha.compute(q, k, v).values, expected)
    # identity weights with a bias are not skipped: the bias is added
    biased = dict(identity, **{"out_proj.bias": np.full(e, 0.5, np.float32)})
    mha.set_weights(biased)
    np.testing.assert_allclose(mha.compute(q, k, v).values, expected + 0.5, rtol=1e-6, atol=1e-6)


def test_ruvector_imports_and_serves_without_torch():
    """torch is imported only inside from_torch: with torch unimportable, ruvector imports and
    computes, and from_torch says what it needs."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, ruvector as rv\n"
        "x = np.ones((3, 8), np.float32)\n"
        "rv.MultiHeadAttention({'num_heads': 2}, embed_dim=8).compute(x, x, x, key_padding_mask=np.zeros(3, bool))\n"
        "try:\n    rv.MultiHeadAttention.from_torch(object())\n"
        "except rv.InvalidConfigError as e:\n    print(e)\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m] is not None)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "needs torch" in run.stdout
