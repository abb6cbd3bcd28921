"""sagan_jax.interop.to_torch: our models' variables as the PyTorch state_dicts of the chapter's
and StudioGAN's model code (tests/reference/torch_sagan.py, torch_resnet_sagan.py).

* to_torch ∘ from_torch is the identity on the committed PyTorch state_dicts (bit for bit;
  ``num_batches_tracked`` is written as 0), and from_torch ∘ to_torch on our variables;
* with torch: the reference models load to_torch's output with ``strict=True`` and compute
  our models' eval-mode outputs (≤ 1e-5 scaled, as tests/parity.py: the same float32
  functions, summed in another order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.interop.to_torch import to_torch
from sagan_jax.interop.torch import from_torch
from sagan_jax.models import Discriminator64, Generator64
from tests.parity import assert_close, assert_tree_close, nchw, nhwc, sub
from tests.reference.fixtures import load_fixture
from tests.resnet_cases import MODEL_CASES, studiogan_models

CHAPTER_WIDTH = 8  # the chapter fixtures' image_size


def _models(name):
  if name == "chapter_models":
    return Generator64(width=CHAPTER_WIDTH), Discriminator64(width=CHAPTER_WIDTH)
  return studiogan_models(**MODEL_CASES[name])


@pytest.mark.parametrize("name", ["chapter_models", "resnet_models", "resnet_models_uncond64"])
def test_round_trips_are_identities(name):
  case = load_fixture(name)
  for net, module in zip(("G", "D"), _models(name)):
    state = sub(case, f"{net}/state/")
    variables = from_torch(module, state)
    exported = to_torch(module, variables)
    assert sorted(exported) == sorted(state), f"{name} {net}: other keys"
    for key, value in state.items():
      if not key.endswith("num_batches_tracked"):
        np.testing.assert_array_equal(exported[key], value, err_msg=f"{name} {net} {key}")
    back = from_torch(module, exported)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(variables)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_refuses_what_studiogan_computes_differently():
  generator, discriminator = studiogan_models(**MODEL_CASES["resnet_models"])
  case = load_fixture("resnet_models")
  variables = from_torch(discriminator, sub(case, "D/state/"))
  with pytest.raises(ValueError, match="shortcut_after_activation=False"):
    to_torch(discriminator.clone(shortcut_after_activation=False), variables)
  g_variables = from_torch(generator, sub(case, "G/state/"))
  with pytest.raises(ValueError, match="bn_style='studiogan'"):
    to_torch(generator.clone(bn_style="official"), g_variables)
  with pytest.raises(TypeError, match="to_torch supports"):
    to_torch(object(), {})


def _trained_variables(module, *inputs):
  """Random init, then one train-mode call: SN's u, v and BN's statistics advanced."""
  variables = module.init(jax.random.key(3), *inputs)
  _, updated = module.apply(variables, *inputs, train=True,
                            mutable=["spectral", "batch_stats"])
  return {**variables, **updated}


def test_reference_models_load_the_export_and_compute_ours():
  torch = pytest.importorskip("torch")
  from tests.reference import torch_resnet_sagan as tr
  from tests.reference import torch_sagan as ts

  rng = np.random.default_rng(0)
  setting = MODEL_CASES["resnet_models"]
  labels = np.array([0, 2, 1, 2])
  z = rng.standard_normal((4, 16)).astype(np.float32)
  images = rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
  generator, discriminator = studiogan_models(**setting)
  theirs = {"G": tr.Generator(32, 16, setting["width"], setting["num_classes"],
                              attn_g_loc=(setting["attention"][0],)),
            "D": tr.Discriminator(32, setting["width"], setting["num_classes"],
                                  attn_d_loc=(setting["attention"][1],))}
  chapter_z = rng.standard_normal((4, 20)).astype(np.float32)
  chapter_images = rng.uniform(-1, 1, (4, 1, 64, 64)).astype(np.float32)
  cases = [
      ("ResNet G", generator, theirs["G"], (z, labels), lambda m: m(
          torch.from_numpy(z), torch.from_numpy(labels))),
      ("ResNet D", discriminator, theirs["D"], (nhwc(images), labels), lambda m: m(
          torch.from_numpy(images), torch.from_numpy(labels))),
      ("chapter G", Generator64(width=CHAPTER_WIDTH), ts.Generator(20, CHAPTER_WIDTH),
       (chapter_z,), lambda m: m(torch.from_numpy(chapter_z).view(4, 20, 1, 1))[0]),
      ("chapter D", Discriminator64(width=CHAPTER_WIDTH), ts.Discriminator(20, CHAPTER_WIDTH),
       (nhwc(chapter_images),), lambda m: m(torch.from_numpy(chapter_images))[0]),
  ]
  for what, ours, reference, inputs, run_reference in cases:
    variables = _trained_variables(ours, *(jnp.asarray(x) for x in inputs))
    reference.load_state_dict(to_torch(ours, variables, tensors=True), strict=True)
    reference.eval()
    with torch.no_grad():
      expected = run_reference(reference).numpy()
    got = np.asarray(ours.apply(variables, *inputs, train=False))
    got = nchw(got) if got.ndim == 4 else got
    assert_close(got, expected.reshape(got.shape), what=f"{what} eval")
    # and back: the reference's own state_dict is our variables
    back = from_torch(ours, {k: v.numpy() for k, v in reference.state_dict().items()})
    assert_tree_close({k: back[k] for k in ("params",)}, {"params": variables["params"]},
                      what=f"{what} params back")
