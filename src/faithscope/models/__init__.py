"""Model adapters, loading and fine-tuning: the only code that touches models and devices."""

from .adapter import AdapterStats, Encoded, InputError, ModelAdapter
from .loading import ModelLoadError, load_model, resolve_device

__all__ = ["AdapterStats", "Encoded", "InputError", "ModelAdapter", "ModelLoadError",
           "load_model", "resolve_device"]
