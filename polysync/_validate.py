"""Argument checks shared by every primitive: one wording, raised before any kernel runs."""

from __future__ import annotations

import math
from numbers import Real

MAX_NAME_LENGTH = 255


def timeout(value: object, what: str = "timeout") -> float | None:
    """``None`` (wait forever) or a finite number of seconds ``>= 0``; infinity means ``None``."""
    if value is None:
        return None
    if type(value) is float and 0.0 <= value < math.inf:  # the common case, cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{what} must be None or a number of seconds, not {type(value).__name__} {value!r}"
        )
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{what} must be None or a number of seconds >= 0, not NaN")
    if seconds < 0:
        raise ValueError(f"{what} must be None or a number of seconds >= 0, not {value!r}")
    return None if math.isinf(seconds) else seconds


def block_and_timeout(
    block: object, timeout_: object, blocking: object
) -> tuple[bool, float | None]:
    """Resolve ``acquire(block, timeout, blocking=)`` to ``(blocking, timeout)``."""
    if blocking is not None:
        if block is not True:
            raise TypeError("acquire() takes block or blocking, not both")
        block = blocking
    if isinstance(block, bool):
        flag = block
    elif isinstance(block, int):  # threading-style acquire(0) / acquire(1)
        flag = bool(block)
    else:
        raise TypeError(f"block must be True or False, not {type(block).__name__} {block!r}")
    seconds = timeout(timeout_)
    if not flag and timeout_ is not None:
        raise ValueError(f"a non-blocking acquire cannot take a timeout (got {timeout_!r})")
    return flag, seconds


def count(value: object, what: str, minimum: int) -> int:
    """An ``int`` (not a bool) of at least *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {value!r}")
    return value


def name(value: object) -> str | None:
    """``None`` (anonymous) or a non-empty str of at most 255 characters without NUL."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"name must be None or a str, not {type(value).__name__} {value!r}")
    if not value:
        raise ValueError("name must not be empty (pass name=None for an anonymous object)")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"name must be at most {MAX_NAME_LENGTH} characters, not {len(value)} "
            f"({value[:20]!r}...)"
        )
    if "\0" in value:
        raise ValueError(f"name must not contain NUL characters: {value!r}")
    return value
