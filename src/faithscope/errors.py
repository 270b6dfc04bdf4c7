"""Exceptions shared across faithscope."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (empty text, too long with strict=True, bad target, unknown name...)."""
