"""Provenance: the library versions recorded in every Explanation and study manifest.

Example
-------
>>> from faithscope.provenance import versions
>>> sorted(versions())
['faithscope', 'numpy', 'python', 'torch', 'transformers']
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

import numpy as np

from ._lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


def versions() -> dict[str, str]:
    import transformers

    from . import __version__

    return {"faithscope": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
