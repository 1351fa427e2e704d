"""POSIX names for polysync objects: injective, within the limits, readable where possible.

A hashed name's user name is kept in a sidecar segment, ``<prefix>-u-<digest>`` (its
cells' digest), so that listing can show it.
"""

from __future__ import annotations

import hashlib
import re
import sys

from polysync.kernel import ObjectName, Scope

_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
# Linux allows 255 bytes less "sem."; macOS allows 31 (PSHMNAMLEN).
_MAX_POSIX_NAME = 31 if sys.platform == "darwin" else 240
PREFIX = "/ps" if sys.platform == "darwin" else "/polysync"
_PREFIX = PREFIX
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


def hashed_digest(pname: str) -> str | None:
    """The digest of the hashed POSIX name *pname*; ``None`` if it is not a hashed one."""
    stem = f"{_PREFIX}-h-"
    return pname[len(stem) :] if pname.startswith(stem) else None


def sidecar_name(digest: str) -> str:
    """The POSIX name of the segment recording the user name of hashed block *digest*."""
    return f"{_PREFIX}-u-{digest}"


def sidecar_file(digest: str) -> str:
    """:func:`sidecar_name` as the file under /dev/shm (Linux)."""
    return sidecar_name(digest).lstrip("/")


def is_cells_of(user_name: str, digest: str) -> bool:
    """Whether *digest* is that of the cells of the named object *user_name*."""
    return posix_name(ObjectName(Scope.NAMED, user_name, "c")) == f"{_PREFIX}-h-{digest}"
