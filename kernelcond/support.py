"""Support-set files: the one format every method writes and every evaluation reads.

A support file is an `.npz` holding either

* `images` `(n, H, W, C)` and `labels` (`(n,)` integers or `(n, c)` float
  targets such as KIP's learned labels), plus `config` (JSON: the run that made
  it, with its dataset and preprocessing) — `distilled.npz` of a condensation;
* or `indices` `(n,)` into the training set (a selected subset), whose inputs and
  one-hot labels are taken from the dataset.

Images of a condensation live in the preprocessed space of the run that made
them (`config['data']`: standardisation, ZCA).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np

from kernelcond import evaluate
from kernelcond import io
from kernelcond import preprocess


def save_support(path: str, images, labels, config: dict) -> None:
  """Writes a support file atomically (`config` must name the dataset under 'data')."""
  io.save_npz(path, images=np.asarray(images, np.float32), labels=np.asarray(labels),
              config=config)


def recorded_config(arrays: dict) -> Optional[dict]:
  """The `config` JSON of a support file's arrays, or None."""
  if "config" not in arrays:
    return None
  try:
    return json.loads(str(arrays["config"]))
  except json.JSONDecodeError:
    return None


def load_support(path: str, dataset: Any, center: bool = True):
  """`(x, y, labels)` of a support file against `dataset` (a `data.Dataset`).

  Args:
    path: the `.npz` file.
    dataset: the (preprocessed) dataset the support set belongs to.
    center: centred one-hot targets for integer labels.

  Returns:
    `(x (n, ...) float32, y (n, c) float32 targets, labels)`, with `labels` the
    `(n,)` integer labels when the file holds hard labels (or indices), else None.

  Raises:
    ValueError / FileNotFoundError: naming the file and what is wrong with it.
  """
  arrays = io.load_npz(path)
  num_classes = dataset.num_classes
  if "indices" in arrays and "images" not in arrays:
    idx = np.asarray(arrays["indices"])
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
      raise ValueError(f"{path}: 'indices' must be a 1-D integer array, got {idx.shape} "
                       f"{idx.dtype}")
    if idx.size == 0 or idx.min() < 0 or idx.max() >= dataset.num_train:
      raise ValueError(f"{path}: indices must lie in [0, {dataset.num_train}) for "
                       f"{dataset.name}'s training set")
    labels = np.asarray(dataset.y_train[idx], np.int32)
    return (dataset.x_train[idx], preprocess.one_hot(labels, num_classes, center=center), labels)
  if "images" not in arrays or "labels" not in arrays:
    raise ValueError(f"{path} must hold 'images' and 'labels' (or 'indices'); it has "
                     f"{sorted(arrays)}")
  x = np.asarray(arrays["images"], np.float32)
  y = np.asarray(arrays["labels"])
  if x.shape[1:] != tuple(dataset.image_shape):
    raise ValueError(f"{path}: images of shape {x.shape[1:]}, but {dataset.name} has "
                     f"{tuple(dataset.image_shape)}")
  labels = None
  if y.ndim == 1:
    if not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"{path}: 1-D labels must be integers, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f"{path}: labels must lie in [0, {num_classes})")
    labels = y.astype(np.int32)
    y = preprocess.one_hot(labels, num_classes, center=center)
  if y.shape != (len(x), num_classes):
    raise ValueError(f"{path}: labels of shape {y.shape}, expected ({len(x)}, {num_classes})")
  preprocess.check_finite(x, f"{path} images")
  preprocess.check_finite(y, f"{path} labels")
  evaluate.check_magnitude(x, f"{path}: images")
  evaluate.check_magnitude(y, f"{path}: labels")
  return x, y.astype(np.float32), labels
