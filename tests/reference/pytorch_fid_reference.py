"""pytorch-fid 0.3.0 as the reference of the FID Inception tests (needs torch, torchvision,
pytorch-fid: the `test` extra).

* `import_pytorch_fid()` imports pytorch-fid's ``inception`` and ``fid_score`` modules. The
  registry's torchvision 0.28.0 (the match of torch 2.13) is a CUDA build: beside the CPU
  torch its ``import`` dies in ``torchvision._meta_registrations`` ("operator
  torchvision::nms does not exist"). Those two modules only register torchvision's C++ ops
  (nms, roi_align, …) with torch's meta/autograd machinery; pytorch-fid's InceptionV3 is
  plain ``torch.nn`` and needs none of them, so empty stand-ins are put in their place when
  (and only when) the plain import fails.
* `pytorch_fid_models(state_dict)` builds pytorch-fid's models with the given weights instead
  of downloading them: ``InceptionV3([3])`` (pool3, the FID features) and the
  ``fid_inception_v3()`` it wraps (whose ``fc`` gives the 1008 logits of the IS).
* `case_pytorch_fid(seed, ...)` is the fixture: test images, pytorch-fid's pool3 and softmax
  for each, and its FID between two sets computed by its own code path (image files →
  ``get_activations`` → ``np.mean``/``np.cov`` → ``calculate_frechet_distance``).
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import tempfile
import types

import numpy as np

from tests.reference.inception_reference import images, random_state_dict

_STAND_INS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def import_pytorch_fid() -> tuple[types.ModuleType, types.ModuleType]:
  """``(pytorch_fid.inception, pytorch_fid.fid_score)``; raises ImportError without them."""
  importlib.import_module("torch")
  try:
    importlib.import_module("torchvision")
  except RuntimeError as error:  # the CUDA torchvision beside the CPU torch
    if "torchvision::" not in str(error):
      raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
    for name in _STAND_INS:
      sys.modules[name] = types.ModuleType(name)
    importlib.import_module("torchvision")
  return (importlib.import_module("pytorch_fid.inception"),
          importlib.import_module("pytorch_fid.fid_score"))


def pytorch_fid_models(state_dict: dict[str, np.ndarray]):
  """``(InceptionV3([3]), fid_inception_v3())`` in eval mode, loaded with ``state_dict``."""
  import torch  # pylint: disable=g-import-not-at-top

  inception, _ = import_pytorch_fid()
  tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}
  download = inception.load_state_dict_from_url
  inception.load_state_dict_from_url = lambda *args, **kwargs: tensors  # no download
  try:
    wrapper = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    full = inception.fid_inception_v3().eval()
  finally:
    inception.load_state_dict_from_url = download
  return wrapper, full


def probs(full, images_uint8: np.ndarray) -> np.ndarray:
  """The softmax of ``fid_inception_v3``'s 1008 logits, on pytorch-fid's preprocessing:
  ``ToTensor`` → bilinear resize to 299 (``align_corners=False``) → ``2x − 1``."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255
  with torch.no_grad():
    x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    return torch.softmax(full(x), dim=1).numpy()


def folder_activations(wrapper, images_uint8: np.ndarray) -> np.ndarray:
  """pytorch-fid's pool3 of ``images`` saved as PNG files, read by its own ``get_activations``
  (PIL ``convert('RGB')``, ``ToTensor``, its model's resize and scaling); float64 (n, 2048)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  _, fid_score = import_pytorch_fid()
  with tempfile.TemporaryDirectory() as folder:
    files = []
    for i, image in enumerate(images_uint8):
      files.append(pathlib.Path(folder, f"{i:04d}.png"))
      Image.fromarray(image).save(files[-1])
    return fid_score.get_activations(files, wrapper, batch_size=50, dims=2048, device="cpu",
                                     num_workers=0)


def case_pytorch_fid(seed: int, count: int = 10, sizes: tuple[int, int] = (32, 64),
                     fid_dims: int | None = None) -> dict[str, np.ndarray]:
  """Two sets of ``count`` images (``sizes[0]`` and ``sizes[1]`` pixels square), pytorch-fid's
  pool3 and probs of each, and its FID between them (on the first ``fid_dims`` features;
  None: all 2048 — scipy's ``sqrtm`` of a 2048² matrix takes minutes on 2 cores).

  Weights: `random_state_dict(seed)`; images: `images(seed + 1 + set, count, size)`.
  """
  _, fid_score = import_pytorch_fid()
  wrapper, full = pytorch_fid_models(random_state_dict(seed))
  out: dict[str, np.ndarray] = {"config/seed": np.asarray(seed, np.int64)}
  stats = []
  for index, (name, size) in enumerate(zip("ab", sizes)):
    pixels = images(seed + 1 + index, count, size)
    features = folder_activations(wrapper, pixels)
    out[f"{name}/images"] = pixels
    out[f"{name}/pool3"] = features.astype(np.float32)
    out[f"{name}/probs"] = probs(full, pixels)
    kept = features[:, :fid_dims]
    stats.append((np.mean(kept, axis=0), np.cov(kept, rowvar=False)))
  out["fid"] = np.asarray(fid_score.calculate_frechet_distance(*stats[0], *stats[1]),
                          np.float64)
  out["config/fid_dims"] = np.asarray(fid_dims or 2048, np.int64)
  return out
