"""What the redis backend keeps under its prefix: listing named objects, collecting orphans.

Both walk the namespace with ``SCAN`` (never ``KEYS``, which blocks the server), a batch
at a time, over every primary of a cluster. A primitive's keys are
``<prefix>:{<tag>}:<part>``; the tag of a named object is ``n:<name>``, or ``h:<digest>``
for a name holding braces, whose name its creator records under the part ``u``.

Collecting removes what dead processes left, where the server can tell, with one script
per primitive (atomic: a live process's key is never half-removed):

* keys of a primitive whose meta key (``:k``) is gone and that have no TTL: the object
  expired (anonymous) or was unlinked, and a late call of a process recreated a part,
  which nothing can reach or expire any more;
* queue entries of waiters whose liveness lapsed (a Lock, RLock, Semaphore or Condition
  waiter ticks every few seconds while it lives): the scripts pass over them anyway, and
  a live waiter whose entry lapsed queues itself again.

Everything else expires by itself: anonymous objects ``anonymous_ttl`` after their last
user, leases with their holder, waiter lists with their message.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from polysync.backends.redis.server import text
from polysync.kernel import Kind, Listed, Orphan

if TYPE_CHECKING:
    from polysync.backends.redis.backend import RedisBackend

#: Keys SCAN is asked for per call (a hint; the server may return more or fewer).
SCAN_COUNT = 1000
#: The kinds whose queue (``:q``) has a liveness set (``:l``) of the same entries.
_QUEUED = frozenset({Kind.LOCK, Kind.RLOCK, Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE, Kind.CONDITION})
_PARAMETER_KINDS = frozenset({Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE, Kind.BARRIER})


def _glob(literal: str) -> str:
    """*literal* escaped for a SCAN MATCH pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", literal)


def _scan(backend: RedisBackend, pattern: str) -> Iterator[str]:
    with backend.server.translated():
        for key in backend.client.scan_iter(match=pattern, count=SCAN_COUNT):
            yield text(key)


def parse_meta(meta: str) -> tuple[Kind, int] | None:
    """The kind and parameter a meta value ``kind:param:ttl`` holds (``None``: not ours)."""
    kind_text, _, rest = meta.partition(":")
    try:
        kind, param = Kind(kind_text), int(rest.split(":", 1)[0])
    except ValueError:
        return None
    return kind, param if kind in _PARAMETER_KINDS else 0


def list_named(backend: RedisBackend) -> Iterator[Listed]:
    """Every named object under the backend's prefix (a snapshot)."""
    prefix = backend.settings["prefix"]
    assert isinstance(prefix, str)
    stem = f"{prefix}:{{"
    metas = [
        key
        for scope in ("n", "h")
        for key in _scan(backend, f"{_glob(stem)}{scope}:*}}:k")
        if key.startswith(stem) and key.endswith("}:k")
    ]
    for key in sorted(metas):
        tag = key[len(stem) : -3]
        base = key[:-2]
        with backend.server.translated():
            meta = backend.client.get(key)
            recorded = backend.client.get(f"{base}:u") if tag.startswith("h:") else None
        if meta is None:
            continue  # unlinked since the scan
        if tag.startswith("n:"):
            name, note = tag[2:], None
        elif recorded is not None:
            name, note = text(recorded), None
        else:
            name, note = (
                key,
                "its name was not recorded (made by an older polysync): shown by its key",
            )
        found = parse_meta(text(meta))
        if found is None:
            yield Listed(name, None, 0, f"its meta key holds {text(meta)[:40]!r}, not polysync's")
        else:
            yield Listed(name, found[0], found[1], note)


def collect(backend: RedisBackend, dry_run: bool) -> list[Orphan]:
    """Remove (or, with *dry_run*, only find) what dead processes left under the prefix."""
    prefix = backend.settings["prefix"]
    assert isinstance(prefix, str)
    stem = f"{prefix}:{{"
    parts: defaultdict[str, set[str]] = defaultdict(set)
    for key in _scan(backend, f"{_glob(stem)}*"):
        base, sep, part = key.rpartition("}:")
        if sep and key.startswith(stem) and not part.startswith("w:"):  # waiter lists expire
            parts[base + "}"].add(part)
    server = backend.server
    dry = 1 if dry_run else 0
    orphans: list[Orphan] = []
    for base, found in sorted(parts.items()):
        meta_key = f"{base}:k"
        if "k" not in found:
            keys = [f"{base}:{p}" for p in sorted(found)]
            for gone in server.run("gc", [meta_key, *keys], ["orphans", dry]):
                orphans.append(Orphan(text(gone), "no meta key (expired or unlinked), no TTL"))
            continue
        if "q" not in found or "l" not in found:
            continue
        with server.translated():
            meta = backend.client.get(meta_key)
        kind = parse_meta(text(meta)) if meta is not None else None
        if kind is None or kind[0] not in _QUEUED:
            continue
        queue = [meta_key, f"{base}:q", f"{base}:l"]
        for entry in server.run("gc", queue, ["queue", dry]):
            waiter = text(entry).split("|", 1)[0]
            orphans.append(Orphan(f"{base}:q entry {waiter}", "its waiter stopped ticking"))
    return orphans
