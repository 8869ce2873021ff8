"""The library's one progress hook: ``progress(items, desc=...)`` wraps a loop and yields its items.

The library never draws bars (habit: logging inside, bars at the edge); the CLI passes a tqdm wrapper.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
Progress = Callable[..., Iterable]


def no_progress(items: Iterable[T], *, desc: str = "") -> Iterable[T]:
    return items
