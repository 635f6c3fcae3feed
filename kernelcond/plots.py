"""Figures written next to results (matplotlib, Agg backend, atomic writes).

Kept in the library so that a run writes the same artifacts whether a script, a
notebook or a test started it.
"""

from __future__ import annotations

import numpy as np

from kernelcond import io


def pyplot():
  """`matplotlib.pyplot` on the Agg backend (no display needed)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path: str, dpi: int = 80) -> None:
  """Saves `fig` as PNG atomically (a killed run never leaves half a file) and closes it."""
  plt = pyplot()
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=dpi)
  plt.close(fig)


def save_support_png(path: str, images, labels, class_names, ipc: int) -> None:
  """A grid of support images, one column per class, titled `argmax: max` of each label.

  Args:
    path: the PNG to write.
    images: `(n, H, W, C)` (any scale: each image is min-max normalised).
    labels: `(n, c)` targets (learned or one-hot); the class of column `c` is
      read from the example at index `c * ipc`.
    class_names: `c` names.
    ipc: examples per class (at most 10 rows are drawn).
  """
  plt = pyplot()
  images, labels = np.asarray(images), np.asarray(labels)
  num_classes = labels.shape[1]
  rows = min(ipc, 10)
  fig, axes = plt.subplots(rows, num_classes, figsize=(1.2 * num_classes, 1.35 * rows),
                           squeeze=False)
  for c in range(num_classes):
    for r in range(rows):
      ax = axes[r, c]
      ax.axis("off")
      i = c * ipc + r
      if i >= len(images):
        continue
      img = images[i]
      img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
      if img.ndim == 1:  # tabular: a square-ish strip
        img = img[None, :, None]
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img[..., :3],
                cmap="gray" if img.shape[-1] == 1 else None)
      ax.set_title(f"{labels[i].argmax()}: {labels[i].max():.2f}", fontsize=7)
    if c * ipc < len(labels):
      axes[0, c].set_title(f"{class_names[c]}\n{labels[c * ipc].argmax()}: "
                           f"{labels[c * ipc].max():.2f}", fontsize=7)
  fig.suptitle("support set (label argmax: max value)", fontsize=9)
  fig.tight_layout()
  save_figure(fig, path)


def curves_figure(path: str, draw, *, xlabel: str, ylabel: str, title: str,
                  title_size: int = 10, invert_x: bool = False, dpi: int = 100) -> None:
  """One 6x4 axes of curves: `draw(ax)` plots them (with labels), then axes, grid, legend."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  draw(ax)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if invert_x:
    ax.invert_xaxis()
  ax.set_title(title, fontsize=title_size)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  save_figure(fig, path, dpi=dpi)
