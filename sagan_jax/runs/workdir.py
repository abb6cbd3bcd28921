"""A run's folder: ``config.json``, and where checkpoints, samples and evaluations go.

    <workdir>/config.json        the full config (what sampling and evaluation rebuild)
    <workdir>/checkpoints/<step> orbax checkpoints of the whole state
    <workdir>/samples/           sample grids and attention figures
    <workdir>/eval/              eval_<step>.json
    <workdir>/events.out.*       TensorBoard
"""

from __future__ import annotations

import json
import os

import ml_collections

from sagan_jax.atomic_file import atomic_write

CONFIG_FILE = "config.json"
SAMPLES_DIR = "samples"
EVAL_DIR = "eval"


def write_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """``<workdir>/config.json``, written atomically."""
  return atomic_write(os.path.join(workdir, CONFIG_FILE), config.to_json(indent=2).encode())


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in ``workdir`` was trained with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a sagan-jax workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def samples_dir(workdir: str) -> str:
  return os.path.join(workdir, SAMPLES_DIR)


def eval_dir(workdir: str) -> str:
  return os.path.join(workdir, EVAL_DIR)
