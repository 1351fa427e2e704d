"""Argument checks shared by every primitive: one wording, raised before any kernel runs.

Every refusal is a ``TypeError`` (wrong type) or a ``ValueError`` (out of range) whose
message names the value it got and what is accepted, raised before anything is stored.
The limits are the same on every backend:

- :data:`MAX_VALUE` (``2**31 - 1``, POSIX ``SEM_VALUE_MAX`` and Win32's ``LONG`` maximum)
  bounds a semaphore's value, ``release(n)``, and a Barrier's parties;
- :data:`MAX_NAME_LENGTH` characters bound a name (which must encode as UTF-8);
- a timeout above :data:`MAX_TIMEOUT` seconds means "wait forever", as ``None`` does.
"""

from __future__ import annotations

import threading
from numbers import Real
from typing import Any

#: The largest semaphore value, ``release(n)`` and Barrier ``parties`` on every backend.
MAX_VALUE = 2**31 - 1
#: The longest name, in characters.
MAX_NAME_LENGTH = 255
#: Timeouts above this many seconds wait forever: 2**31 s (68 years), or a minute less
#: than ``threading.TIMEOUT_MAX`` where that is smaller (Windows: about 49.7 days). Every
#: backend's waits and ``time.monotonic() + timeout`` stay exact below it.
MAX_TIMEOUT = float(min(2**31, int(threading.TIMEOUT_MAX) - 60))
#: Backend options in seconds (the redis backend's ``lease`` and ``anonymous_ttl``, and a
#: primitive's ``lease=``): from a millisecond (what Redis expiries count in) to 2**31 s.
MIN_SECONDS_OPTION = 0.001
MAX_SECONDS_OPTION = float(2**31)
#: The longest repr a message quotes in full.
_SHOWN = 60


def shown(value: object) -> str:
    """*value*'s repr for a message: whole if short, else its start and its length."""
    try:
        text = repr(value)
    except ValueError:  # an int past sys.get_int_max_str_digits()
        if isinstance(value, int):
            return f"an int of {value.bit_length()} bits"
        raise
    if len(text) <= _SHOWN:
        return text
    return f"{text[:40]}... ({len(text)} characters of repr)"


def _kind(value: object) -> str:
    return f"{type(value).__name__} {shown(value)}"


def timeout(value: object, what: str = "timeout") -> float | None:
    """``None`` (wait forever) or a number of seconds ``>= 0``.

    Above :data:`MAX_TIMEOUT` (infinity included) it is ``None``: ints of any size and
    floats up to ``sys.float_info.max`` mean "wait that long", which no wait outlives.
    """
    if value is None:
        return None
    if type(value) is float and 0.0 <= value <= MAX_TIMEOUT:  # the common case, cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{what} must be None or a number of seconds, not {_kind(value)}")
    number: Any = value  # a Real: ordered, but typeshed's Real does not say so
    if not number >= 0:  # negative, or NaN (of any Real type)
        raise ValueError(f"{what} must be None or a number of seconds >= 0, not {shown(value)}")
    if number > MAX_TIMEOUT:  # compared before float(): 10**400 has no float
        return None
    return float(number)


def block_and_timeout(
    block: object, timeout_: object, blocking: object
) -> tuple[bool, float | None]:
    """Resolve ``acquire(block, timeout, blocking=)`` to ``(blocking, timeout)``."""
    if blocking is not None:
        if block is not True:
            raise TypeError(
                f"acquire() takes block or blocking, not both (got block={shown(block)}, "
                f"blocking={shown(blocking)})"
            )
        block = blocking
        what = "blocking"
    else:
        what = "block"
    if isinstance(block, bool):
        flag = block
    elif isinstance(block, int):  # threading-style acquire(0) / acquire(1)
        flag = bool(block)
    else:
        raise TypeError(f"{what} must be True or False, not {_kind(block)}")
    seconds = timeout(timeout_)
    if not flag and timeout_ is not None:
        raise ValueError(f"a non-blocking acquire cannot take a timeout (got {shown(timeout_)})")
    return flag, seconds


def count(value: object, what: str, minimum: int, maximum: int | None = MAX_VALUE) -> int:
    """An ``int`` (not a bool, not a float) in ``minimum..maximum`` (``None``: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int {_range(minimum, maximum)}, not {_kind(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{what} must be {_range(minimum, maximum)}, not {shown(value)}")
    return value


def _range(minimum: int, maximum: int | None) -> str:
    if maximum is None:
        return f">= {minimum}"
    limit = " (polysync.MAX_VALUE)" if maximum == MAX_VALUE else ""
    return f">= {minimum} and <= {maximum}{limit}"


def headroom(n: int, value: int) -> ValueError:
    """``release(n)`` would take a semaphore at *value* past :data:`MAX_VALUE`."""
    return ValueError(
        f"release({n}) would raise the semaphore's value {value} past "
        f"{MAX_VALUE} (polysync.MAX_VALUE); at most {max(0, MAX_VALUE - value)} can be released"
    )


def name(value: object) -> str | None:
    """``None`` (anonymous) or a non-empty str of at most 255 characters, UTF-8, no NUL."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"name must be None or a str, not {_kind(value)}")
    if not value:
        raise ValueError("name must be a non-empty str, not '' (name=None: anonymous)")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"name must be at most {MAX_NAME_LENGTH} characters, not {len(value)} ({shown(value)})"
        )
    if "\0" in value:
        raise ValueError(f"name must not contain NUL characters: {shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise ValueError(
            f"name must be encodable as UTF-8 (no lone surrogates such as "
            f"{value[exc.start]!r} at index {exc.start}): {shown(value)}"
        ) from None
    return value


def seconds_option(value: object, what: str, minimum: float, maximum: float) -> float:
    """A backend option in seconds: a finite int or float in ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be a number of seconds in {minimum:g}..{maximum:g}, not {_kind(value)}"
        )
    if not minimum <= value <= maximum:  # NaN fails both comparisons
        raise ValueError(
            f"{what} must be a number of seconds in {minimum:g}..{maximum:g}, not {shown(value)}"
        )
    return float(value)
