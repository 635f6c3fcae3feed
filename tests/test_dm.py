"""Distribution Matching (arXiv:2110.04181) against explicit class means, and an
end-to-end digits run through experiment.distill (outputs, resume)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from kernelcond import data
from kernelcond import evaluate
from kernelcond import experiment
from kernelcond import preprocess
from kernelcond.condense import dm

_dm_loss = jax.jit(dm.dm_loss, static_argnums=(0, 5))
_W = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)


def _embed(x):
  return jnp.tanh(jnp.reshape(x, (x.shape[0], -1)) @ _W)


def test_loss_equals_explicit_class_means():
  rng = np.random.default_rng(1)
  x_real = rng.standard_normal((3, 5, 1, 6, 1)).astype(np.float32)
  w_real = np.ones((3, 5), np.float32)
  w_real[1, 3:] = 0.0  # class 1 has 3 members, the rest is padding
  x_syn = rng.standard_normal((3, 2, 1, 6, 1)).astype(np.float32)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  got = float(_dm_loss(_embed, x_real, w_real, x_syn, keys, "none"))
  expected = 0.0
  for c in range(3):
    real = np.tanh(x_real[c][w_real[c] > 0].reshape(-1, 6).astype(np.float64) @ _W)
    syn = np.tanh(x_syn[c].reshape(-1, 6).astype(np.float64) @ _W)
    expected += np.sum((real.mean(0) - syn.mean(0)) ** 2)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # The gradient moves each synthetic image towards its class's real mean embedding.
  grad = jax.grad(lambda z: dm.dm_loss(_embed, x_real, w_real, z, keys))(jnp.asarray(x_syn))
  step = x_syn - 0.5 * np.asarray(grad)
  assert float(_dm_loss(_embed, x_real, w_real, step, keys, "none")) < got


def test_siamese_augmentation_shares_the_draw():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 3, 6, 6, 1)).astype(np.float32)
  w = np.ones((2, 3), np.float32)
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  embed = lambda z: jnp.reshape(z, (z.shape[0], -1))[:, :4] ** 2
  # Same images, same draw: equal means whatever transform is drawn.
  assert float(_dm_loss(embed, x, w, x, keys, "color_crop_cutout")) < 1e-10


def test_distill_end_to_end_on_digits(tmp_path):
  digits = preprocess.prepare(data.load_dataset("digits"))
  method_config = dm.DmConfig(steps=4, net="mlp", width=32, depth=1, batch_real=32,
                              dsa_strategy="none", lr=0.5)
  config = experiment.DistillConfig(method="dm", method_config=method_config, ipc=2,
                                    checkpoint_every=2, eval_every=2,
                                    evaluation=evaluate.EvalConfig(kernel="fc2",
                                                                   kernel_backend="native",
                                                                   protocols=()),
                                    data={"dataset": "digits"})
  workdir = str(tmp_path / "dm")
  results = experiment.distill(config, digits, workdir)
  assert results["run"]["steps"] == 4 and results["config"]["method"] == "dm"
  distilled = results["evaluations"]["distilled"]
  assert distilled["support_size"] == 20 and distilled["label_kind"] == "hard"
  with np.load(os.path.join(workdir, "distilled.npz")) as f:
    images = f["images"]
    assert images.shape == (20, 8, 8, 1)
  x_nat = experiment.split(config, digits).x_natural
  assert np.abs(images - x_nat).max() > 1e-3  # the images moved from the natural subset
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    losses = [json.loads(line)["loss"] for line in f if line.strip()]
  assert len(losses) == 4 and all(np.isfinite(losses))
  # A session killed after step 4, before its last checkpoint and results: the
  # re-run resumes from step 2 and ends where the uninterrupted run ended.
  os.remove(os.path.join(workdir, "checkpoints", "ckpt_000000004.npz"))
  os.remove(os.path.join(workdir, "results.json"))
  again = experiment.distill(config, digits, workdir)
  assert again["run"]["resumed_from_step"] == 2 and again["run"]["steps"] == 4
  with np.load(os.path.join(workdir, "distilled.npz")) as f:
    np.testing.assert_allclose(f["images"], images, atol=1e-6)
