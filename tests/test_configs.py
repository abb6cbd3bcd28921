"""Every shipped config validates and its models build; the CIFAR-10 config's models have
StudioGAN's SAGAN parameter counts; the configs' docstrings name only files, modules and
README sections that exist.

No data is read and nothing is trained: the models are initialised abstractly
(`jax.eval_shape`), so the ImageNet-sized networks cost no memory.
"""

import importlib.util
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.data import ArraySource, Batcher
from sagan_jax.models import build_gan
from sagan_jax.train.config import (base_config, ema_settings, image_shape, total_steps,
                                    uses_ema, validate)
from sagan_jax.train.ema import EmaSettings
from tests.reference.fixtures import load_fixture

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py") if p.stem != "common")


def get_config_module(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(path: pathlib.Path):
  return get_config_module(path).get_config()


def abstract_params(config):
  """``(G params, D params, G output, D output)`` as shapes, for ``config``'s models."""
  shape = image_shape(config)
  generator, discriminator = build_gan(config.model, shape)
  labels = [] if config.model.num_classes is None else [jax.ShapeDtypeStruct((2,), jnp.int32)]
  z = jax.ShapeDtypeStruct((2, config.model.z_dim), jnp.float32)
  images = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  key = jax.random.key(0)
  g_vars = jax.eval_shape(generator.init, key, z, *labels)
  d_vars = jax.eval_shape(discriminator.init, key, images, *labels)
  g_out = jax.eval_shape(lambda v, *a: generator.apply(v, *a, train=False), g_vars, z, *labels)
  d_out = jax.eval_shape(lambda v, *a: discriminator.apply(v, *a, train=False), d_vars, images,
                         *labels)
  return g_vars["params"], d_vars["params"], g_out, d_out


def count(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates_and_its_models_build(path):
  config = get_config(path)
  validate(config)
  _, _, g_out, d_out = abstract_params(config)
  assert g_out.shape == (2, config.data.image_size, config.data.image_size, config.data.channels)
  assert d_out.shape in ((2,), (2, 1))


def test_cifar10_models_have_studiogans_parameter_counts():
  """StudioGAN's SAGAN counts at 32 px come from its PyTorch models with 1,000 classes and
  without classes (`tests/reference`, fixture ``resnet_param_counts``). Classes enter
  linearly: G's K-class count is the unconditional one with each block BatchNorm's affine
  (2·C) replaced by K per-class gains and biases (2·C·K), i.e. ``uncond + (K − 1)·S``; D's adds
  a K × C projection embedding, ``uncond + K·C``. S and C follow from the two fixture counts
  (and must be whole numbers), so the 10-class counts are StudioGAN's, not ours."""
  counts = {k: int(v) for k, v in load_fixture("resnet_param_counts").items()}
  per_class_g, rest = divmod(counts["32/cond/G"] - counts["32/uncond/G"], 1000 - 1)
  embedding_width, rest_d = divmod(counts["32/cond/D"] - counts["32/uncond/D"], 1000)
  assert rest == 0 and rest_d == 0
  config = get_config(next(p for p in CONFIGS if p.stem == "cifar10"))
  classes = config.model.num_classes
  g_params, d_params, _, _ = abstract_params(config)
  assert count(g_params) == counts["32/uncond/G"] + (classes - 1) * per_class_g
  assert count(d_params) == counts["32/uncond/D"] + classes * embedding_width


# What a docstring may point at: a path under one of the repository's own top-level entries
# (StudioGAN's ``src/config.py`` is not ours), a ``sagan_jax`` module, a README section.
_PATH = re.compile(r"(?<![\w/.])((?:%s)/[\w./-]*\w)" % "|".join(
    re.escape(p.name) for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")))
_MODULE = re.compile(r"\b(sagan_jax(?:\.\w+)+)")
_README_SECTION = re.compile(r'README "([^"]+)"')


def names_in_docstring(text: str) -> dict[str, list[str]]:
  return {"paths": _PATH.findall(text), "modules": _MODULE.findall(text),
          "sections": _README_SECTION.findall(text)}


def test_the_docstring_check_sees_what_it_checks():
  found = names_in_docstring('See tests/test_nope.py, sagan_jax.runtime.nope and README "X"; '
                             "StudioGAN's src/config.py is not ours.")
  assert found == {"paths": ["tests/test_nope.py"], "modules": ["sagan_jax.runtime.nope"],
                   "sections": ["X"]}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.py")),
                         ids=lambda p: p.stem)
def test_config_docstrings_name_only_what_exists(path):
  module = get_config_module(path)
  found = names_in_docstring(module.__doc__ or "")
  missing = [p for p in found["paths"] if not (ROOT / p).exists()]
  missing += [m for m in found["modules"] if importlib.util.find_spec(m) is None]
  headings = {line.lstrip("#").strip().replace("`", "")
              for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("#")}
  missing += [f'README "{s}"' for s in found["sections"] if s.replace("`", "") not in headings]
  assert not missing, f"{path.name}'s docstring names what does not exist: {missing}"


def test_values_derived_from_a_config():
  """`image_shape`, `total_steps`, `ema_settings`, `uses_ema`: computed in train/config.py."""
  chapter = base_config()
  assert image_shape(chapter) == (64, 64, 1)
  # 400 images at batch 64: 7 batches an epoch, the last one partial.
  batcher = Batcher(ArraySource(np.zeros((400, 4, 4, 1), np.uint8), "zeros"), 64)
  assert total_steps(chapter, batcher) == 300 * 7  # the chapter's 2,100 steps
  chapter.optimizer.d_steps = 2
  assert total_steps(chapter, batcher) == 300 * 7 // 2  # two batches a step
  chapter.num_steps = 5
  assert total_steps(chapter, batcher) == 5
  assert ema_settings(chapter) is None and not uses_ema(chapter)
  cond32 = get_config(ROOT / "configs" / "mnist_cond32.py")
  assert image_shape(cond32) == (32, 32, 1)
  assert ema_settings(cond32) == EmaSettings(0.995, 500)
  assert uses_ema(cond32) and not uses_ema(cond32, use_ema=False)
  cond32.ema.use_for_eval = False
  assert not uses_ema(cond32) and uses_ema(cond32, use_ema=True)
  del chapter["ema"]  # a saved config from before the ema section
  assert not uses_ema(chapter)
