"""Trains the evaluation's digit classifier (``sagan_jax/eval/assets/mnist_classifier.msgpack``).

Data: the packaged 5,000 real MNIST digits minus the chapter GAN's training
images (first 200 sevens and eights); the last 100 digits of each class are
the test split (see `sagan_jax.eval.mnist_classifier.split_indices`). Images
are prepared like the GAN's data (PIL bicubic 28→64, [-1, 1]). Runs on CPU in
a few minutes and prints the test accuracy::

  python scripts/train_mnist_classifier.py [--epochs 20] [--out PATH]

Deterministic for a given jax/XLA version and machine (fixed seed); the
numbers may differ in the last digits on other hardware.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sagan_jax.eval import mnist_classifier as mc  # noqa: E402
from sagan_jax.train.config import base_config  # noqa: E402

DEFAULT_OUT = ROOT / "sagan_jax" / "eval" / "assets" / mc.ASSET


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=100)
  parser.add_argument("--learning_rate", type=float, default=3e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
  args = parser.parse_args()

  gan_data = base_config().data  # the chapter GAN's training images stay unseen
  train_idx, test_idx = mc.split_indices(gan_data.digits, gan_data.per_digit)
  x_train, y_train = mc.mnist_64(train_idx)
  x_test, y_test = mc.mnist_64(test_idx)
  print(f"train: {len(x_train)} digits (no GAN training images), test: {len(x_test)}",
        flush=True)

  model = mc.DigitCNN()
  apply = jax.jit(lambda p, x: mc._predict(model, p, x))  # pylint: disable=protected-access
  start = time.time()

  def log(epoch, loss, params):  # the test accuracy is watched, never used for choices
    acc = mc.accuracy(lambda x: apply(params, x), x_test, y_test)
    print(f"epoch {epoch}/{args.epochs} | loss {loss:.4f} | test accuracy {acc:.4f} | "
          f"{time.time() - start:.0f}s", flush=True)

  params = mc.train_classifier(
      x_train, y_train, num_epochs=args.epochs, batch_size=args.batch_size,
      learning_rate=args.learning_rate, seed=args.seed, log=log)
  predict = lambda x: apply(params, x)
  train_acc = mc.accuracy(predict, x_train, y_train)
  test_acc = mc.accuracy(predict, x_test, y_test)
  per_class = {}
  probs = np.asarray(predict(x_test)["probs"])
  for digit in range(10):
    mask = y_test == digit
    per_class[str(digit)] = float((probs[mask].argmax(1) == digit).mean())
  scale = mc.feature_scale(predict, x_train)
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))

  meta = {
      "test_accuracy": test_acc,
      "train_accuracy": train_acc,
      "test_accuracy_per_class": per_class,
      "num_train": int(len(x_train)),
      "num_test": int(len(x_test)),
      "num_params": num_params,
      "splits": (f"packaged mnist_5k; test = last {mc.TEST_PER_CLASS} of each class; train = "
                 f"the rest minus the first {gan_data.per_digit} of digits {tuple(gan_data.digits)}"),
      "input": "64x64x1 float32 in [-1, 1]; PIL bicubic 28->64, (x/255-0.5)/0.5",
      "features": f"penultimate ReLU layer, {model.feature_dim}-d, divided by feature_scale",
      "feature_scale": scale,
      "training": (f"AdamW lr {args.learning_rate}, 1-epoch warm-up then cosine, wd 1e-4, "
                   f"batch {args.batch_size}, {args.epochs} epochs, random shifts up to 4 px, "
                   f"seed {args.seed}"),
      "jax_version": jax.__version__,
  }
  path = mc.save_weights(args.out, params, meta)
  digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
  print(f"train accuracy: {train_acc:.4f}")
  print(f"per-class test accuracy: "
        + " ".join(f"{d}:{a:.2f}" for d, a in per_class.items()))
  print(f"test accuracy: {test_acc:.4f} ({round(test_acc * len(x_test))}/{len(x_test)})")
  print(f"wrote {path} ({pathlib.Path(path).stat().st_size:,} bytes, {num_params:,} params, "
        f"sha256 {digest})")


if __name__ == "__main__":
  main()
