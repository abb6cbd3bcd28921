"""The chapter's Generator/Discriminator against the PyTorch chapter code
(outputs, attention maps and updated state, train and eval mode; see
tests/parity.py for the tolerance)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.interop.torch import from_torch
from sagan_jax.models import Discriminator64, Generator64
from tests.parity import SOURCES, assert_close, assert_tree_close, load_case, nchw, nhwc, sub

WIDTH = 8  # the fixtures' image_size (channel multiplier)


def _check_maps(case, prefix, maps):
  for k, attention_map in enumerate(maps, start=1):
    name = f"{prefix}/am{k}"
    model = prefix.split("/")[0]
    rows = case[f"const/{model}/am{k}/rows_index"]
    assert_close(np.asarray(attention_map)[:, rows, :], case[f"{name}/rows"], what=f"{name} rows")
    probe = case[f"const/{model}/am{k}/probe"]
    assert_close(np.asarray(attention_map) @ probe, case[f"{name}/probe"], what=f"{name} probe")


@pytest.mark.parametrize("source", SOURCES)
def test_generator_matches_torch(source):
  case = load_case("chapter_models", source)
  module = Generator64(width=WIDTH)
  variables = from_torch(module, sub(case, "G/state/"))
  z = case["input/z"].reshape(-1, 20)

  (images, maps), updated = module.apply(variables, z, train=True, return_attention=True,
                                         mutable=["spectral", "batch_stats"])
  assert_close(nchw(images), case["G/train/out"], what="G train images")
  _check_maps(case, "G/train", maps)
  expected = from_torch(module, {**sub(case, "G/state/"), **sub(case, "G/train/state/")})
  assert_tree_close(dict(updated), {k: expected[k] for k in ("spectral", "batch_stats")},
                    what="G state after train call")

  variables = {**variables, **updated}
  images, maps = module.apply(variables, z, train=False, return_attention=True)
  assert_close(nchw(images), case["G/eval/out"], what="G eval images")
  _check_maps(case, "G/eval", maps)
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0


@pytest.mark.parametrize("source", SOURCES)
def test_discriminator_matches_torch(source):
  case = load_case("chapter_models", source)
  module = Discriminator64(width=WIDTH)
  variables = from_torch(module, sub(case, "D/state/"))
  images = nhwc(case["input/images"])

  (logits, maps), updated = module.apply(variables, images, train=True, return_attention=True,
                                         mutable=["spectral", "batch_stats"])
  assert logits.shape == (images.shape[0],)
  assert_close(logits, case["D/train/out"].reshape(-1), what="D train logits")
  _check_maps(case, "D/train", maps)
  expected = from_torch(module, {**sub(case, "D/state/"), **sub(case, "D/train/state/")})
  assert_tree_close(dict(updated)["spectral"], expected["spectral"], what="D u, v after train")

  variables = {**variables, **updated}
  logits, maps = module.apply(variables, images, train=False, return_attention=True)
  assert_close(logits, case["D/eval/out"].reshape(-1), what="D eval logits")
  _check_maps(case, "D/eval", maps)


def test_from_torch_rejects_unused_and_missing_keys():
  case = load_case("chapter_models", "fixture")
  state = sub(case, "G/state/")
  with pytest.raises(ValueError, match="not used"):
    from_torch(Generator64(width=WIDTH), {**state, "extra.weight": np.zeros(3)})
  del state["layer2.1.running_var"]
  with pytest.raises(KeyError, match="layer2.1.running_var"):
    from_torch(Generator64(width=WIDTH), state)


def test_from_torch_rejects_another_width():
  case = load_case("chapter_models", "fixture")
  with pytest.raises(ValueError, match="does not fit"):
    from_torch(Generator64(width=16), sub(case, "G/state/"))


def test_output_shapes_and_modes():
  g, d = Generator64(width=8), Discriminator64(width=8)
  gv = g.init(jax.random.key(0), jnp.zeros((1, 20)))
  dv = d.init(jax.random.key(1), jnp.zeros((1, 64, 64, 1)))
  images = g.apply(gv, jnp.ones((3, 20)))
  assert images.shape == (3, 64, 64, 1)
  (logits, (m1, m2)) = d.apply(dv, images, return_attention=True)
  assert logits.shape == (3,) and m1.shape == (3, 64, 64) and m2.shape == (3, 16, 16)
  _, (g1, g2) = g.apply(gv, jnp.ones((3, 20)), return_attention=True)
  assert g1.shape == (3, 256, 256) and g2.shape == (3, 1024, 1024)
  # Train mode without mutable collections is a clear flax error, not silent staleness.
  with pytest.raises(Exception, match="batch_stats|spectral"):
    g.apply(gv, jnp.ones((3, 20)), train=True)


@pytest.mark.parametrize("bad", [(3, 19), (3, 20, 1, 1)])
def test_generator_rejects_bad_noise(bad):
  g = Generator64(width=8)
  gv = g.init(jax.random.key(0), jnp.zeros((1, 20)))
  with pytest.raises(ValueError, match=r"z of shape \(batch, 20\)"):
    g.apply(gv, jnp.ones(bad))


def test_discriminator_rejects_bad_images():
  d = Discriminator64(width=8)
  dv = d.init(jax.random.key(1), jnp.zeros((1, 64, 64, 1)))
  with pytest.raises(ValueError, match=r"\(batch, 64, 64, 1\)"):
    d.apply(dv, jnp.ones((2, 32, 32, 1)))


def test_from_torch_names_the_mis_shaped_key_and_both_shapes():
  state = sub(load_case("chapter_models", "fixture"), "G/state/")
  state["layer2.1.running_mean"] = np.zeros(7, np.float32)
  with pytest.raises(ValueError) as error:
    from_torch(Generator64(width=WIDTH), state)
  message = str(error.value)
  assert message == ("state_dict key 'layer2.1.running_mean' of shape (7,) (as "
                     "['batch_stats']['layer2']['bn']['mean']) does not fit Generator64(width=8, "
                     "channels=1), which needs (32,)")
  # A kernel: its PyTorch layout, ours, and the expected one; one line.
  state = sub(load_case("chapter_models", "fixture"), "G/state/")
  state["last.0.weight"] = np.zeros((8, 1, 4, 2), np.float32)
  with pytest.raises(ValueError, match=re.escape(
      "state_dict key 'last.0.weight' of shape (8, 1, 4, 2) (as ['params']['last']['kernel'] → "
      "(4, 2, 8, 1)) does not fit Generator64(width=8, channels=1), which needs (4, 4, 8, 1)")):
    from_torch(Generator64(width=WIDTH), state)


def test_from_torch_names_inconsistent_spectral_norm_vectors():
  state = sub(load_case("chapter_models", "fixture"), "G/state/")
  state["layer1.0.weight_u"] = np.ones(5, np.float32)
  with pytest.raises(ValueError, match=re.escape(
      "state_dict keys 'layer1.0.weight_u' (5,) and 'layer1.0.weight_v' (320,) do not fit "
      "'layer1.0.weight_orig' (20, 64, 4, 4) (u needs 64 values, v 320)")):
    from_torch(Generator64(width=WIDTH), state)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_from_torch_refuses_non_finite_tensors(bad):
  state = sub(load_case("chapter_models", "fixture"), "G/state/")
  weight = state["layer3.0.weight_orig"].copy()
  weight[0, 1, 2, 3] = bad
  state["layer3.0.weight_orig"] = weight
  with pytest.raises(ValueError, match=re.escape(
      f"state_dict['layer3.0.weight_orig'] holds 1 non-finite value(s) (NaN or inf) among "
      f"{weight.size}; refusing to load it")):
    from_torch(Generator64(width=WIDTH), state)
