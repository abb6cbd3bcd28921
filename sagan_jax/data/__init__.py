"""Data pipeline: sources of uint8 images, a stateless batcher, prefetching.

Typical use by a trainer (``config`` from ``sagan_jax.train.config.base_config``)::

  source = data.make_source(config.data)            # or data.mnist_digits((7, 8), 200)
  batcher = data.Batcher(source, config.batching.batch_size, config.seed,
                         random_flip=config.data.random_flip,
                         process_index=jax.process_index(),
                         process_count=jax.process_count())
  with data.prefetch_batches(batcher, start_step=int(state.step),
                             stop_step=batcher.num_steps(config.num_epochs)) as batches:
    for batch in batches:   # {'image': float32 (b, H, W, C) in [-1, 1], ...}
      state, metrics = train_step(state, batch)
"""

from sagan_jax.data.batcher import Batcher
from sagan_jax.data.errors import DataError, DataNotFoundError
from sagan_jax.data.factory import CONFIG_FIELDS, SOURCE_NAMES, make_source
from sagan_jax.data.labels import check_class_labels, check_label_range, source_num_classes
from sagan_jax.data.image_folder import IMAGE_EXTENSIONS, ImageFolderSource, image_folder
from sagan_jax.data.mnist import load_mnist_5k, mnist_classes, mnist_digits
from sagan_jax.data.prefetch import Prefetcher, prefetch_batches
from sagan_jax.data.record import data_record, describe_record
from sagan_jax.data.source import ArraySource, Source
from sagan_jax.data.tfds_source import tfds_dataset, tfds_image_shape
from sagan_jax.data.tfds_stream import TfdsStreamSource, tfds_stream
from sagan_jax.data.transforms import to_model_range

__all__ = [
    "ArraySource",
    "Batcher",
    "CONFIG_FIELDS",
    "DataError",
    "DataNotFoundError",
    "IMAGE_EXTENSIONS",
    "ImageFolderSource",
    "Prefetcher",
    "SOURCE_NAMES",
    "Source",
    "check_class_labels",
    "check_label_range",
    "data_record",
    "describe_record",
    "image_folder",
    "load_mnist_5k",
    "make_source",
    "mnist_classes",
    "mnist_digits",
    "prefetch_batches",
    "source_num_classes",
    "TfdsStreamSource",
    "tfds_dataset",
    "tfds_image_shape",
    "tfds_stream",
    "to_model_range",
]
