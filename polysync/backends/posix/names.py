"""POSIX names for polysync objects: injective, within the limits, readable where possible."""

from __future__ import annotations

import hashlib
import re
import sys

from polysync.kernel import ObjectName

_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
# Linux allows 255 bytes less "sem."; macOS allows 31 (PSHMNAMLEN).
_MAX_POSIX_NAME = 31 if sys.platform == "darwin" else 240
_PREFIX = "/ps" if sys.platform == "darwin" else "/polysync"
_HASH_CHARS = 24 if sys.platform == "darwin" else 40


def posix_name(name: ObjectName) -> str:
    """The POSIX name (leading slash, within length limits) of a stored object."""
    rest = name.key if not name.part else f"{name.key}.{name.part}"
    if name.is_anonymous:  # generated: always safe and short
        return f"{_PREFIX}-{name.scope.value}-{rest.replace(':', '-')}"
    readable = f"{_PREFIX}-n-{rest}"
    if _SAFE.fullmatch(rest) and len(readable) <= _MAX_POSIX_NAME:
        return readable
    digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_PREFIX}-h-{digest[:_HASH_CHARS]}"
