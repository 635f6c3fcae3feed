"""kernelcond: dataset condensation and data pruning with neural tangent kernels."""

__version__ = "0.1.0"
