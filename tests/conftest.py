"""Test setup: four fake CPU devices, so every multi-device path is exercised.

XLA's backend optimisation level 0: the tests run tiny shapes, so their time is
mostly compilation, which level 0 roughly halves (tests/test_random_features.py:
110 s -> 58 s on 2 CPU cores); results are checked against tolerances or
against runs compiled the same way, never against optimised-build timings.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
