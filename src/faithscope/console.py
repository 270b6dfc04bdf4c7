"""The terminal: a console that prints text as it is, and tables that fit any width.

Texts from data (sentences, model names, paths) may contain ``[bold]``, ``[/]`` or ``:smile:``;
rich would read them as markup or emoji codes (crashing on ``[/]``, silently dropping
``[bold red]``). :func:`make_console` turns markup, emoji codes and highlighting off, so every
string is printed verbatim; styled output is built from :class:`rich.text.Text` pieces instead
(:func:`literal`). When the output is not a terminal (a file or a pipe), the console is wide
enough that tables are never wrapped or truncated: names are printed in full.

Example
-------
>>> import io
>>> from faithscope.console import make_console
>>> buf = io.StringIO()
>>> make_console(file=buf).print("a [/] b [bold]c[/bold] :smile:")
>>> buf.getvalue()
'a [/] b [bold]c[/bold] :smile:\\n'
"""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.text import Text

PIPE_WIDTH = 100_000  # "unlimited": rich tables only take the width they need


def make_console(file: IO[str] | None = None, *, stderr: bool = False,
                 width: int | None = None) -> Console:
    """A console without markup, emoji codes or highlighting; unbounded width off a terminal."""
    console = Console(file=file, stderr=stderr, markup=False, emoji=False, highlight=False,
                      width=width)
    if width is None and not console.is_terminal:
        console = Console(file=file, stderr=stderr, markup=False, emoji=False, highlight=False,
                          width=PIPE_WIDTH)
    return console


def literal(text: Any, style: str = "") -> Text:
    """``text`` as a rich Text that no console interprets (markup, emoji codes)."""
    return Text(str(text), style=style)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Concatenate plain strings and ``(text, style)`` pairs into one Text, markup-free."""
    return Text.assemble(*parts)


def rule(console: Console, title: str) -> None:
    """A heading: a rule on a terminal, one plain line elsewhere (no 100,000-dash lines)."""
    if console.is_terminal and console.width < PIPE_WIDTH:
        console.rule(literal(title))
    else:
        console.print(literal(f"== {title} =="))
