"""Where the toolkit talks to the user: rich on stderr, and only from the main process.

warn("label 'grief' has 3 positives, fewer than the 5 folds")
"""

from __future__ import annotations

import os

from rich.console import Console

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun / accelerate launch."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def warn(message: str) -> None:
    if is_main_process():
        stderr.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def info(message: str) -> None:
    if is_main_process():
        stderr.print(message, markup=False, soft_wrap=True)


def error(message: str) -> None:
    # markup off: the message quotes user data (paths, cell values) that may contain [brackets]
    stderr.print("error: " + message, style="bold red", markup=False, soft_wrap=True)
