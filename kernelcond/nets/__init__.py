"""Finite networks: trained on pruned, distilled or cleaned sets and evaluated.

* `models`: MLP, DC-style ConvNet, CIFAR ResNet-18 and `SpecNet` (the finite
  network of a kernel `ArchSpec`), by name from `models.MODELS`.
* `losses`: targets and per-example losses ('xent', 'soft_xent', 'mse'),
  label smoothing, mixup.
* `optim`: optimisers whose numeric hyper-parameters are traced state; the
  NTK learning-rate bound.
* `train`: `TrainConfig`, `TrainState`, `train_step`, `evaluate`,
  `train_and_evaluate` (checkpoints, resume, early stopping).
* `protocols`: the named evaluation protocols ('dc', 'dsa', 'kernel', 'mlp')
  and `evaluate_protocol`.
* `augment`: differentiable siamese augmentation (DSA).
"""
