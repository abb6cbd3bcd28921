"""Self-check of the PyTorch reference side: fixtures regenerate, sigma is torch's sigma."""

import numpy as np
import pytest

from .fixtures import load_fixture

torch = pytest.importorskip("torch")

from . import cases, torch_sagan  # noqa: E402  (needs torch)

SN_CALLS = ("train1", "train2", "eval", "train3", "bwd")


def _assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for k, e in expected.items():
        a = actual[k]
        assert a.dtype == e.dtype and a.shape == e.shape, k
        if not np.array_equal(a, e):  # bit-for-bit expected; allow 1e-7 (scaled) across CPUs
            scale = max(1.0, float(np.abs(e).max()))
            np.testing.assert_allclose(a, e, rtol=0, atol=1e-7 * scale, err_msg=k)


def test_sn_conv2d_regenerates_fixture():
    _assert_same(cases.case_sn_conv2d(0), load_fixture("sn_conv2d"))


def test_chapter_models_regenerates_fixture():
    # also exercises load_fixture's restoring of arrays shared with chapter_train_step
    _assert_same(cases.case_chapter_models(0), load_fixture("chapter_models"))


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
