"""Kernel object names for polysync objects: injective, readable where possible, within MAX_PATH."""

from __future__ import annotations

import hashlib
import re

from polysync.kernel import ObjectName

#: Longest kernel object name (MAX_PATH); polysync's names stay well within it.
MAX_PATH = 260
NAMESPACES = ("Local", "Global")

_READABLE_USER = re.compile(r"[A-Za-z0-9_.-]+")
_READABLE_GENERATED = re.compile(r"[A-Za-z0-9_.:]+")
# Room left for the namespace, "polysync-d-", "~" and a generation number.
_MAX_READABLE = 200


def windows_name(name: ObjectName, namespace: str = "Local") -> str:
    """The kernel object name (without generation) of a stored object.

    Injective: readable ``n-``/``a-``/``w-`` forms never contain ``~`` and keep their tag,
    hashed names are ``h-`` plus 64 hex digits, and generation suffixes start with ``~``.
    """
    rest = name.key if not name.part else f"{name.key}.{name.part}"
    if name.is_anonymous and _READABLE_GENERATED.fullmatch(rest):
        base = f"{name.scope.value}-{rest.replace(':', '-')}"
    elif not name.is_anonymous and _READABLE_USER.fullmatch(rest) and len(rest) <= _MAX_READABLE:
        base = f"n-{rest}"
    else:
        digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()
        base = f"h-{digest}"
    return f"{namespace}\\polysync-{base}"


def _directory_name(wname: str) -> str:
    namespace, _, rest = wname.partition("\\")
    return f"{namespace}\\polysync-d-{rest[len('polysync-') :]}"
