"""reproexec: lock code, data, environment and randomness for PyTorch/torchvision training."""

__version__ = "0.1.0"
