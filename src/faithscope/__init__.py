"""faithscope: explain Hugging Face language models and measure how far to trust it."""

__version__ = "0.1.0"

from . import explainers, metrics, targets  # noqa: E402  (registers everything)
from .api import explain, make_explainer, prepare  # noqa: E402
from .audits import audit  # noqa: E402
from .data import Example  # noqa: E402
from .evaluate import evaluate, summarize  # noqa: E402
from .explanation import Explanation, load_explanations, save_explanations  # noqa: E402
from .generation import scalarizers as _generation_targets  # noqa: E402,F401  (registers them)
from .metrics.stability import seed_stability  # noqa: E402
from .models import InputError, ModelAdapter, load_model  # noqa: E402
from .models.ling import LingLR  # noqa: E402
from .registry import Registry  # noqa: E402

__all__ = ["Example", "Explanation", "InputError", "LingLR", "ModelAdapter", "Registry",
           "__version__", "audit", "evaluate", "explain", "explainers", "load_explanations", "load_model",
           "make_explainer", "metrics", "prepare", "save_explanations", "seed_stability",
           "summarize", "targets"]
