"""Images stored as files under a folder (the chapter's ``img_78`` layout).

The folder is scanned once, recursively, at construction; images are decoded
only when a batch asks for them, so folders larger than memory work and a
multi-host run decodes only its own slice of each batch.

With ``class_folders=True`` the layout is torchvision's ``ImageFolder``: one
subfolder per class, whose sorted names give the labels (``root/cat/x.png`` →
the index of ``'cat'`` among the sorted folder names), for class-conditional
models. As there, files directly under the root are not examples.

Every file's header is checked when the source is built (`check_image_files`: opened,
verified, its size and mode read, on a thread pool), so a corrupt file is found before
step 1 rather than when its batch is drawn, hours in. ``skip_bad_images=True`` leaves
such files out (with a count in the log) instead of stopping.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import logging
import os
import pathlib
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from sagan_jax.data import transforms
from sagan_jax.data.errors import DataError, DataNotFoundError
from sagan_jax.data.source import as_indices

logger = logging.getLogger(__name__)

# Matched case-insensitively.
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")

# What PIL raises for unreadable or corrupt files: OSError (incl.
# UnidentifiedImageError, truncated data), SyntaxError and ValueError from
# some decoders, and DecompressionBombError for absurd dimensions.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# Header checks run on this many threads: opening and verifying is file reading
# and zlib/CRC work, which release the GIL.
_CHECK_THREADS = 16
# Bad files named in the log when they are skipped (the count is always given).
_NAMED_BAD_FILES = 5
# A file's content fingerprint reads this many bytes at each end (plus its size): cheap
# for any folder, and an image edited or replaced changes it (compressed data, headers).
_SAMPLED_BYTES = 4096


def list_image_files(root: pathlib.Path) -> list[pathlib.Path]:
  """Image files under ``root``, recursively, in a deterministic order.

  Order: by relative path, compared component by component (so it does not
  depend on the file system's listing order or the OS's path separator).
  Hidden files and folders (name starting with '.') are skipped: they are
  usually metadata such as macOS ``._x.png`` or ``.ipynb_checkpoints``.
  Symbolic links to folders below ``root`` are not followed.
  """
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for name in filenames:
      if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        found.append(pathlib.Path(dirpath, name))
  return sorted(found, key=lambda p: p.relative_to(root).parts)


@functools.lru_cache(maxsize=None)
def _convertible(mode: str, target: str) -> bool:
  """Whether PIL converts images of ``mode`` to ``target`` (a few modes, e.g. 'LAB' → 'L',
  it does not)."""
  try:
    Image.new(mode, (1, 1)).convert(target)
  except ValueError:
    return False
  return True


def _problem(path: pathlib.Path, channels: int) -> Optional[str]:
  """What is wrong with the image file at ``path`` (one phrase), or None.

  Reads the header (format, size, mode) and runs PIL's ``verify`` — for PNG the
  chunks' CRCs up to the end of the file, so a truncated or damaged file is
  caught — without decoding the pixels.
  """
  try:
    with Image.open(path) as image:
      width, height = image.size
      mode = image.mode
      image.verify()
  except FileNotFoundError:
    return "has disappeared"
  except _DECODE_ERRORS as e:
    return f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
  if width < 1 or height < 1:
    return f"is {width}x{height} pixels"
  if not _convertible(mode, transforms.MODES[channels]):
    return f"has mode {mode!r}, which PIL cannot convert to {transforms.MODES[channels]!r}"
  return None


def _content_sample(path: pathlib.Path) -> bytes:
  """The file's size and its first and last `_SAMPLED_BYTES` bytes, hashed (16 bytes)."""
  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    head = f.read(_SAMPLED_BYTES)
    f.seek(max(size - _SAMPLED_BYTES, 0))
    tail = f.read(_SAMPLED_BYTES)
  return hashlib.sha256(size.to_bytes(8, "little") + head + tail).digest()[:16]


def _check_file(path: pathlib.Path, channels: int) -> tuple[Optional[str], bytes]:
  """``(_problem(path), _content_sample(path))``; the sample is empty for a bad file."""
  problem = _problem(path, channels)
  if problem is not None:
    return problem, b""
  try:
    return None, _content_sample(path)
  except OSError as e:
    return f"cannot be read ({e.strerror})", b""


def check_image_files(files: Sequence[pathlib.Path], channels: int,
                      skip_bad: bool = False) -> tuple[list[pathlib.Path], list[bytes]]:
  """Checks every file's header in parallel (see `_problem`).

  Returns:
    ``(good files, a content sample of each)``: the samples (hashes of each file's size,
    first and last bytes) make the folder's fingerprint (`sagan_jax.data.data_record`).

  Args:
    files: image files.
    channels: 1 or 3: the mode the images will be converted to.
    skip_bad: leave bad files out (their count and the first few names are logged)
      instead of raising.

  Raises:
    DataError: a file is bad and ``skip_bad`` is False (naming the first one in
      ``files``' order, and how many are bad).
  """
  with concurrent.futures.ThreadPoolExecutor(
      max_workers=_CHECK_THREADS, thread_name_prefix="image-check") as pool:
    checked = list(pool.map(functools.partial(_check_file, channels=channels), files))
  problems = [problem for problem, _ in checked]
  samples = [sample for problem, sample in checked if problem is None]
  bad = [(f, p) for f, p in zip(files, problems) if p is not None]
  if not bad:
    return list(files), samples
  more = f" ({len(bad)} of {len(files)} files are bad)" if len(bad) > 1 else ""
  if not skip_bad:
    path, problem = bad[0]
    raise DataError(f"image file {path} {problem}{more}; remove it, or set "
                    "config.data.skip_bad_images=True to leave bad files out")
  logger.warning("Skipping %d of %d image files that cannot be used (skip_bad_images=True): %s",
                 len(bad), len(files), "; ".join(f"{f} {p}" for f, p in bad[:_NAMED_BAD_FILES])
                 + (f"; … {len(bad) - _NAMED_BAD_FILES} more" if len(bad) > _NAMED_BAD_FILES
                    else ""))
  return [f for f, p in zip(files, problems) if p is None], samples


class ImageFolderSource:
  """Image files under a folder, decoded lazily, converted and resized.

  Every file with an extension in `IMAGE_EXTENSIONS` (any case) anywhere
  under ``path`` is one example; see `list_image_files` for the order and
  what is skipped. Each image is converted to 'L' (``channels=1``) or 'RGB'
  (``channels=3``) — an alpha channel is dropped — and, if it is not already
  ``image_size`` × ``image_size``, resized to that *square* size with PIL
  bicubic interpolation. The aspect ratio is kept only with ``crop`` (the resize
  of a non-square image to a square stretches it). EXIF orientation is not applied
  (as torchvision's ``ImageFolder``).

  Args:
    path: the folder.
    image_size: output height and width.
    channels: 1 (grayscale) or 3 (RGB).
    class_folders: label images by their class subfolder (see module docstring);
      ``labels`` and ``class_names`` are then set, otherwise None.
    skip_bad_images: leave out files that fail the header check (logged with a
      count) instead of raising.
    check_files: check every file's header now (`check_image_files`); False only
      lists the files (each is still checked when it is decoded).
    crop: None, ``'center_long_edge'``: the centred square of the long edge, taken
      before the resize (`sagan_jax.data.transforms.center_crop_long_edge`), or
      ``'random_long_edge'``: a square at the position `get`'s ``crop_draws`` give (the
      `Batcher` draws them per image; none given: the centre).

  Raises:
    DataNotFoundError: ``path`` does not exist.
    DataError: ``path`` is not a folder, or holds no image files (or, with
      ``class_folders``, no class subfolder, or a class subfolder without images),
      or a file fails the header check (without ``skip_bad_images``).
  """

  def __init__(self, path: str | os.PathLike, image_size: int, channels: int,
               class_folders: bool = False, skip_bad_images: bool = False,
               check_files: bool = True, crop: str | None = None):
    self.image_size = transforms.check_image_size(image_size)
    self.crop = transforms.check_crop(crop)
    self.channels = transforms.check_channels(channels)
    self.root = pathlib.Path(path).expanduser().absolute()
    if not self.root.exists():
      raise DataNotFoundError(f"image folder {self.root} does not exist")
    if not self.root.is_dir():
      raise DataError(f"image folder {self.root} is not a folder")
    self.labels = self.class_names = None
    if class_folders:
      self.files, self.labels, self.class_names = _class_files(self.root)
    else:
      self.files = list_image_files(self.root)
    if not self.files:
      raise DataError(
          f"image folder {self.root} holds no image files (looked recursively for "
          f"{', '.join(IMAGE_EXTENSIONS)}, any case; hidden files skipped)")
    self.skipped = 0  # files left out by the header check
    # A digest of every file's relative path and content sample (None: not checked).
    self.fingerprint = None
    if check_files:
      good, samples = check_image_files(self.files, self.channels, skip_bad=skip_bad_images)
      if len(good) != len(self.files):
        self.skipped = len(self.files) - len(good)
        if self.labels is not None:
          keep = set(good)
          self.labels = self.labels[np.asarray([f in keep for f in self.files], bool)]
        self.files = good
      if not self.files:
        raise DataError(f"image folder {self.root}: every image file failed the check")
      hasher = hashlib.sha256()
      for path, sample in zip(self.files, samples):
        hasher.update(path.relative_to(self.root).as_posix().encode() + b"\0" + sample)
      self.fingerprint = hasher.hexdigest()[:16]
    self.image_shape = (self.image_size, self.image_size, self.channels)
    classes = ""
    if self.class_names is not None:
      shown = ", ".join(f"{i}={name}" for i, name in enumerate(self.class_names[:20]))
      more = len(self.class_names) - 20
      classes = (f", {len(self.class_names)} classes by subfolder ({shown}"
                 f"{f', … {more} more' if more > 0 else ''})")
    skipped = f" ({self.skipped} bad files skipped)" if self.skipped else ""
    self.description = (
        f"image folder {self.root}: {len(self.files)} images{skipped}{classes}, decoded per "
        f"batch, {'L' if self.channels == 1 else 'RGB'}, "
        f"{transforms.CROP_WORDS[self.crop]}resized (bicubic, square) to "
        f"{self.image_size}x{self.image_size}x{self.channels}")

  def __len__(self) -> int:
    return len(self.files)

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.description})"

  def load(self, index: int, crop_draw: float | None = None) -> np.ndarray:
    """Decodes one image → uint8 ``(image_size, image_size, channels)`` (``crop_draw``:
    where a random crop falls, in [0, 1)).

    Raises:
      DataNotFoundError: the file has disappeared since the folder was scanned.
      DataError: the file cannot be decoded (the message names it).
    """
    path = self.files[index]
    try:
      with Image.open(path) as image:
        return transforms.pil_to_array(image, self.image_size, self.channels, self.crop,
                                       crop_draw)
    except FileNotFoundError as e:
      raise DataNotFoundError(f"image file {path} has disappeared: {e}") from e
    except _DECODE_ERRORS as e:
      raise DataError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e

  def get(self, indices: Sequence[int] | np.ndarray,
          crop_draws: np.ndarray | None = None) -> np.ndarray:
    """Decodes the images at ``indices`` → uint8 ``(n, h, w, c)`` (``crop_draws``: one
    random crop draw per index, for ``crop='random_long_edge'``)."""
    idx = as_indices(indices, len(self))
    out = np.empty((len(idx),) + self.image_shape, np.uint8)
    for i, j in enumerate(idx):
      out[i] = self.load(int(j), None if crop_draws is None else float(crop_draws[i]))
    return out

  def verify(self) -> None:
    """Decodes every file once, so a corrupt one fails now, not mid-training.

    Raises:
      DataError: naming the first file that cannot be decoded.
    """
    for i in range(len(self)):
      self.load(i)


def _class_files(root: pathlib.Path) -> tuple[list[pathlib.Path], np.ndarray, tuple[str, ...]]:
  """``(files, labels, class_names)`` of torchvision's ``ImageFolder`` layout under ``root``."""
  class_names = tuple(sorted(entry.name for entry in os.scandir(root)
                             if entry.is_dir() and not entry.name.startswith(".")))
  if not class_names:
    raise DataError(f"image folder {root} has no class subfolders (class_folders=True wants "
                    "root/<class>/<image>, as torchvision's ImageFolder)")
  files, labels = [], []
  for label, name in enumerate(class_names):
    found = list_image_files(root / name)
    if not found:
      raise DataError(f"class folder {root / name} holds no image files")
    files += found
    labels += [label] * len(found)
  return files, np.asarray(labels, np.int32), class_names


def image_folder(path: str | os.PathLike, image_size: int, channels: int,
                 class_folders: bool = False, skip_bad_images: bool = False,
                 check_files: bool = True, crop: str | None = None) -> ImageFolderSource:
  """Images under ``path`` as a lazily decoded source; see `ImageFolderSource`."""
  return ImageFolderSource(path, image_size, channels, class_folders, skip_bad_images,
                           check_files, crop)
