"""Self-check of the PyTorch reference side: fixtures regenerate, sigma is torch's sigma."""

import math

import numpy as np
import pytest

from .fixtures import load_fixture

torch = pytest.importorskip("torch")

from . import cases, torch_sagan  # noqa: E402  (needs torch)

SN_CALLS = ("train1", "train2", "eval", "train3", "bwd")


# Regenerating a fixture runs the same float32 ops, but on another CPU (or library build)
# PyTorch's kernels (oneDNN/MKL) may block a reduction differently, i.e. sum in another order.
# Model (Higham & Mary 2019, probabilistic rounding-error analysis): every addition of a
# reduction of L terms commits an independent rounding error of at most u = 2⁻²⁴ times the
# magnitude of the partial sums; through layers that neither amplify nor shrink errors
# (normalized activations of order 1), a result built from reductions of lengths L₁, L₂, …
# errs from the exact value by more than λ·u·√(ΣLᵢ) times that magnitude with probability
# below 2·exp(−λ²/2). Two summation orders are both within that: their difference is within
# twice it. λ = 6 makes a failure by chance ~3e-8 per value.
U = 2.0 ** -24  # float32 unit roundoff
LAMBDA = 6.0


def reordering_tolerance(reduction_lengths) -> float:
    """Largest |regenerated − fixture| / magnitude that summing in other orders may cause."""
    return 2 * LAMBDA * U * math.sqrt(sum(reduction_lengths))


# The reductions behind each case's deepest value (lengths = terms summed):
# SN(Conv2d(3→5, k4)) on x (2, 3, 8, 8) → (2, 5, 4, 4); weight matrix 5 × 48.
SN_CONV2D_REDUCTIONS = (
    48, 5, 5, 48,  # power iteration: W v, ‖u‖, Wᵀu, ‖v‖
    48, 5,  # σ = uᵀ(W v)
    48,  # the convolution: 3 channels × 4 × 4 taps
    160,  # loss = Σ out · r over 2 × 5 × 4 × 4 outputs
    32, 240,  # ∂W: over 2 × 4 × 4 positions; ∂σ/∂W's inner product over 5 × 48 weights
)
# The chapter's G at image_size 8 (channels 64, 32, 16, 8), batch 4, train mode (the longer
# path: D's convolutions reduce over at most 64 × 16 = 1024 and its maps hold 64 or 16
# positions). Per SN layer with weight matrix r × c: W v (c), ‖u‖ (r), Wᵀu (r), ‖v‖ (c), σ (c, r).
CHAPTER_G_REDUCTIONS = (
    320, 64, 64, 320, 320, 64, 20, 64, 64,  # layer1: SN 64×320, ConvT over 20 in, BN over 4·4·4
    1024, 32, 32, 1024, 1024, 32, 256, 256, 256,  # layer2: SN 32×1024, ConvT 64·4, BN 4·8·8
    512, 16, 16, 512, 512, 16, 128, 1024, 1024,  # layer3: SN 16×512, ConvT 32·4, BN 4·16·16
    16, 2, 256, 256,  # attention at 16×16: q/k/v 1×1 convs, logits over C/8, softmax, Σ values
    256, 8, 8, 256, 256, 8, 64, 4096, 4096,  # layer4: SN 8×256, ConvT 16·4, BN 4·32·32
    8, 1, 1024, 1024,  # attention at 32×32
    32,  # last ConvT over 8·4
)


def _assert_same(actual: dict, expected: dict, tolerance: float, scales=None) -> None:
    """Bit-for-bit where the kernels summed alike; else |a − e| ≤ tolerance × magnitude
    (the magnitude of the summed terms: ``scales[key]`` if given, else max(1, |e|))."""
    assert actual.keys() == expected.keys()
    for k, e in expected.items():
        a = actual[k]
        assert a.dtype == e.dtype and a.shape == e.shape, k
        if not np.array_equal(a, e):
            assert e.dtype.kind == "f", f"{k}: integers must match exactly"
            scale = (scales or {}).get(k, max(1.0, float(np.abs(e).max())))
            np.testing.assert_allclose(a, e, rtol=0, atol=tolerance * scale, err_msg=k)


def test_sn_conv2d_regenerates_fixture():
    expected = load_fixture("sn_conv2d")
    # The loss sums 160 products of both signs: its error scales with Σ|out · r|, not |loss|.
    loss_terms = float(np.abs(expected["bwd/out"] * expected["input/r"]).sum())
    _assert_same(cases.case_sn_conv2d(0), expected,
                 reordering_tolerance(SN_CONV2D_REDUCTIONS), {"bwd/loss": loss_terms})


def test_chapter_models_regenerates_fixture():
    # also exercises load_fixture's restoring of arrays shared with chapter_train_step
    _assert_same(cases.case_chapter_models(0), load_fixture("chapter_models"),
                 reordering_tolerance(CHAPTER_G_REDUCTIONS))


@pytest.mark.parametrize("name", ["sn_conv2d", "sn_conv_transpose2d", "sn_embedding"])
def test_recorded_sigma_is_torch_ratio(name):
    f = load_fixture(name)
    for call in SN_CALLS:
        w_orig = f["changed/weight_orig"] if call in ("train3", "bwd") else f["state/weight_orig"]
        ratio = w_orig / f[f"{call}/weight"]  # torch's own module.weight = weight_orig / sigma
        np.testing.assert_allclose(ratio, f[f"{call}/sigma"], rtol=1e-6, err_msg=call)


def test_sigma_live_bitwise():
    with cases.torch_determinism(1):
        m = torch.nn.utils.spectral_norm(torch.nn.ConvTranspose2d(6, 4, 4, 2, 1))
        x = torch.randn(2, 6, 5, 5)
        with torch.no_grad():
            m(x)
        sigma = cases._sigma(m)
        np.testing.assert_allclose((m.weight_orig / m.weight).detach().numpy(), float(sigma), rtol=1e-6)


def test_weights_init_reaches_weight_orig():
    with cases.torch_determinism(0):
        g = torch_sagan.Generator(z_dim=20, image_size=8)
        sn = g.layer2[0]
        assert sn.weight.data_ptr() == sn.weight_orig.data_ptr()
        before = sn.weight_orig.detach().clone()
        g.apply(torch_sagan.weights_init)
        assert not torch.equal(before, sn.weight_orig.detach())
        assert abs(float(sn.weight_orig.detach().std()) - 0.02) < 0.002
