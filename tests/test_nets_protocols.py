"""Evaluation protocols: the papers' numbers, loss choice, targets, f - f0, early stopping,
and every protocol learning a tiny separable problem."""

import dataclasses

import numpy as np
import pytest

from kernelcond import kernels
from kernelcond.nets import losses
from kernelcond import evaluate
from kernelcond.nets import protocols
from kernelcond.nets import train

CLASSES = 3


def _problem(n, seed):
  """Three classes, each a fixed 8x8 pattern (not a brightness shift: instance norm
  removes those) plus noise."""
  templates = np.random.default_rng(123).standard_normal((CLASSES, 8, 8, 1))
  rng = np.random.default_rng(seed)
  y = np.arange(n, dtype=np.int32) % CLASSES
  x = templates[y] + 0.5 * rng.standard_normal((n, 8, 8, 1))
  return x.astype(np.float32), y


def test_protocol_configs_are_the_papers():
  dc = protocols.get_protocol("dc")
  assert (dc.model, dc.width, dc.depth, dc.norm) == ("convnet", 128, 3, "instance")
  assert (dc.optimizer, dc.momentum, dc.lr, dc.weight_decay) == ("sgd", 0.9, 0.01, 5e-4)
  assert (dc.schedule, dc.batch_size, dc.epochs, dc.hard_loss, dc.augment) == (
      "step_half", 256, 300, "xent", "none")
  assert (dc.mixup_alpha, dc.label_smoothing, dc.val_every) == (0.0, 0.0, 0)
  dsa = protocols.get_protocol("dsa")
  assert dataclasses.replace(dsa, name="dc", epochs=300, augment="none") == dc
  assert (dsa.epochs, dsa.augment) == (1000, "color_crop_cutout_flip_scale_rotate")
  kernel = protocols.get_protocol("kernel")
  assert (kernel.model, kernel.spec, kernel.width) == ("spec_net", "conv3", 1024)
  assert (kernel.hard_loss, kernel.soft_loss, kernel.centre_output) == ("mse", "mse", True)
  assert 2 <= kernel.label_scale <= 16 and kernel.val_every > 0 and kernel.patience > 0
  assert (kernel.optimizer, kernel.momentum, kernel.lr_rule) == ("sgd", 0.9, "ntk_max")
  mlp = protocols.get_protocol("mlp")
  assert (mlp.optimizer, mlp.spec_family, mlp.hard_loss) == ("adam", "fc", "mse")
  assert protocols.PROTOCOLS.names() == ("dc", "dsa", "kernel", "mlp")
  # DC's ConvNet maps 28x28 to 32x32 maps; 32x32 inputs are not padded.
  config = dc.train_config((28, 28, 1), loss="xent", seed=4)
  assert config.model_kwargs_dict == {"width": 128, "depth": 3, "norm": "instance",
                                      "input_padding": 2}
  assert (config.seed, config.schedule, config.lr) == (4, "step_half", 0.01)
  assert dc.train_config((32, 32, 3), loss="xent").model_kwargs_dict["input_padding"] == 0


def test_get_protocol_overrides_and_errors():
  assert protocols.get_protocol("dc", epochs=7, width=16).epochs == 7
  with pytest.raises(ValueError, match="dc, dsa, kernel, mlp"):
    protocols.get_protocol("frepo")
  with pytest.raises(ValueError, match=r"\['epoch', 'lr_decay'\]"):
    protocols.get_protocol("dc", epoch=3, lr_decay=0.1)
  with pytest.raises(ValueError, match="hard-label loss"):
    protocols.get_protocol("dc", hard_loss="soft_xent")
  with pytest.raises(ValueError, match="schedule"):
    protocols.get_protocol("dc", schedule="linear")
  with pytest.raises(ValueError, match="needs a 'fc' kernel spec"):
    x, y = _problem(6, 0)
    protocols.evaluate_protocol("mlp", x, y, x, y, num_classes=CLASSES, spec="conv2")


def test_protocol_strings_carry_overrides():
  p = protocols.get_protocol("kernel:width=128,epochs=500,centre_output=false,lr=0.2")
  assert (p.name, p.width, p.epochs, p.centre_output, p.lr) == ("kernel", 128, 500, False, 0.2)
  assert p.spec == protocols.get_protocol("kernel").spec  # the rest is the protocol's own
  assert protocols.get_protocol("dc:epochs=5", epochs=9).epochs == 9  # keywords win
  for text, match in (("kernel:width=abc", "expected an integer"),
                      ("kernel:widht=3", "fields: model, width"),
                      ("kernel:name=dc", "fields: model"),
                      ("kernel:width=1,width=2", "given twice"),
                      ("dc:norm=group", "protocol norm"), ("nope:width=1", "valid: dc")):
    with pytest.raises(ValueError, match=match):
      protocols.get_protocol(text)
  # a comma-split flag value is joined back: 'dc,kernel:width=8,epochs=3'
  config = evaluate.EvalConfig(kernel="conv3", protocols=["dc", "kernel:width=8", "epochs=3", ""])
  assert config.protocols == ("dc", "kernel:width=8,epochs=3")


def test_hard_and_soft_labels_choose_the_loss_and_targets():
  y = np.array([0, 2, 1], np.int32)
  learned = np.array([[2.0, -0.5, 0.1], [0.0, 0.3, 4.0], [-1.0, 1.0, 0.0]], np.float32)
  dc, kernel = protocols.get_protocol("dc"), protocols.get_protocol("kernel", label_scale=4.0)
  assert (dc.loss_for(y), dc.loss_for(learned)) == ("xent", "soft_xent")
  assert (kernel.loss_for(y), kernel.loss_for(learned)) == ("mse", "mse")
  np.testing.assert_array_equal(protocols.protocol_targets(dc, y, 3), y)
  np.testing.assert_array_equal(protocols.protocol_targets(dc, learned, 3), learned)
  np.testing.assert_allclose(protocols.protocol_targets(kernel, y, 3),
                             4.0 * (np.eye(3)[y] - 1 / 3), rtol=1e-6)
  np.testing.assert_allclose(protocols.protocol_targets(kernel, learned, 3),
                             4.0 * losses.rescale_targets(learned), rtol=1e-6)
  x, _ = _problem(3, 0)
  config = protocols.get_protocol("dc", width=4, epochs=1)
  result = protocols.evaluate_protocol(config, x, learned, x, y, num_classes=3, seeds=(0,))
  assert result["loss"] == "soft_xent"  # hard labels: see the tests below


def test_kernel_protocol_trains_f_minus_f0_which_starts_at_zero():
  kernel = protocols.get_protocol("kernel", width=8)
  config = kernel.train_config((8, 8, 1), loss="mse", spec=kernels.get_spec("conv2"))
  assert config.centre_output and config.loss == "mse"
  state = train.create_train_state(config, (8, 8, 1), CLASSES, 1, "mse")
  x, _ = _problem(6, 0)
  np.testing.assert_array_equal(train.predict(state, x), 0.0)


@pytest.mark.parametrize("name,overrides,spec", [
    ("dc", {"width": 8, "epochs": 300}, None),  # full batch: 300 steps at DC's lr 0.01
    ("dsa", {"width": 8, "epochs": 300, "augment": "flip_cutout"}, None),
    ("kernel", {"width": 32, "epochs": 40}, "conv2"),
    ("mlp", {"width": 64, "epochs": 40}, None),
])
def test_every_protocol_beats_chance_on_a_separable_problem(name, overrides, spec):
  if name == "dsa":
    augment = pytest.importorskip("kernelcond.nets.augment")
    if not hasattr(augment, "augment"):
      pytest.skip("kernelcond.nets.augment.augment is not written yet")
  x, y = _problem(15, 0)
  x_test, y_test = _problem(60, 1)
  protocol = protocols.get_protocol(name, **overrides)
  result = protocols.evaluate_protocol(protocol, x, y, x_test, y_test, num_classes=CLASSES,
                                       seeds=(0, 1), spec=spec)
  assert set(result) >= {"protocol", "config", "loss", "accuracies", "mean", "std", "seconds"}
  assert result["protocol"] == name and len(result["accuracies"]) == 2
  assert result["loss"] == protocol.hard_loss
  expected = protocol.to_dict()
  if protocol.model == "spec_net":  # the spec actually trained, resolved
    expected["spec"] = kernels.get_spec(spec or protocol.spec).to_dict()
  assert result["config"] == expected
  assert result["mean"] > 0.7, result  # chance is 1/3
  assert result["std"] == pytest.approx(np.std(result["accuracies"]))
  if protocol.lr_rule == "ntk_max":  # the bound is the seed's own network's
    assert result["lrs"][0] != result["lrs"][1]


def test_early_stopping_uses_the_validation_set_only_where_the_protocol_does():
  x, y = _problem(9, 0)
  x_val, y_val = _problem(12, 2)
  mlp = protocols.get_protocol("mlp", width=16, epochs=12, val_every=3, patience=6)
  result = protocols.evaluate_protocol(mlp, x, y, x, y, num_classes=CLASSES, seeds=(0,),
                                       x_val=x_val, y_val=y_val)
  assert result["early_stopping"] and len(result["val_accuracies"]) == 1
  assert result["steps_run"][0] <= 12
  dc = protocols.get_protocol("dc", width=4, epochs=2)
  result = protocols.evaluate_protocol(dc, x, y, x, y, num_classes=CLASSES, seeds=(0,),
                                       x_val=x_val, y_val=y_val, spec="fc3")
  assert not result["early_stopping"] and "val_accuracies" not in result
  assert result["steps_run"] == [2]
