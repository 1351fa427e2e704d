"""What the posix backend keeps in /dev/shm: listing named objects, and collecting orphans.

Linux shows POSIX shared memory as files ``/dev/shm/<name>`` and POSIX semaphores as
``/dev/shm/sem.<name>`` (see :mod:`.names` for the names). Listing reads them and each
block's header (four 64-bit cells: magic, kind, parameter, layout) with a plain read,
never mapping or opening anything. A hashed name (one that is not made of
``[A-Za-z0-9_.-]``, or is too long) does not tell the user's name: its creator records
it in a sidecar segment (``polysync-u-<digest>``, the UTF-8 name), which listing reads;
a block made before sidecars existed (or by a creator that died between the two) is
listed under its POSIX name, with a note.

Collecting removes what dead processes left, and never what a live process uses:

* an anonymous object (``polysync-a-<tracker>-…``) whose cleanup tracker is gone (its
  listening socket is no longer in ``/proc/net/unix``; a live tracker unlinks its own);
* a waiter semaphore (``sem.polysync-w-<pid>-<index>-<nonce>``) whose process is gone
  (its PID and start time, kept in the name, no longer match a running process);

and, for both, only if no running process maps the file or has it open (every
``/proc/<pid>/maps`` and ``/proc/<pid>/fd`` of this user is read just before). Named
objects persist until unlinked (``polysync rm``): they are never collected, but the
parked waiters of a named Event whose processes died are taken off its queue (under the
Event's mutex), so that its ``waiting`` counts the living.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Iterator

from polysync.backends.posix import names as _names
from polysync.backends.posix.tracker import address
from polysync.derived import HEADER, MAGIC
from polysync.derived.parking import WaiterRegistry
from polysync.derived.waits import DerivedEvent
from polysync.errors import BackendError, PolysyncError
from polysync.kernel import Found, Kind, Listed, Orphan, SemaphoreBackend

SHM = "/dev/shm"
_SEM = "sem."
_PARAMETER_KINDS = frozenset({Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE, Kind.BARRIER})


def require_listing() -> None:
    """Refuse where /dev/shm does not list POSIX objects (not Linux: macOS keeps no such view)."""
    if not sys.platform.startswith("linux") or not os.path.isdir(SHM):
        raise BackendError(
            "the posix backend lists its objects through /dev/shm, which only Linux has: "
            "it cannot list them here"
        )


def _entries() -> list[str]:
    stem = _names.PREFIX.lstrip("/") + "-"
    return [n for n in os.listdir(SHM) if n.startswith(stem) or n.startswith(_SEM + stem)]


def _read_header(path: str) -> tuple[int, ...] | None:
    """The header cells of the block at *path* (``None``: gone, or too small to be one)."""
    try:
        with open(path, "rb") as f:
            data = f.read(HEADER * 8)
    except OSError:
        return None
    if len(data) < HEADER * 8:
        return None
    return struct.unpack(f"{HEADER}q", data)


def _kind(code: int) -> Kind | None:
    for kind in Kind:
        if kind.code == code:
            return kind
    return None


def _listed(name: str, path: str, note: str | None = None) -> Listed:
    cells = _read_header(path)
    if cells is None or cells[0] != MAGIC:
        return Listed(name, None, 0, "unfinished: its creator died creating it (or is now)")
    kind = _kind(cells[1])
    if kind is None:
        return Listed(name, None, 0, f"its header names no polysync kind ({cells[1]})")
    found = Found(kind, cells[2] if kind in _PARAMETER_KINDS else 0)
    return Listed(name, found.kind, found.parameter, note)


def recorded_name(digest: str) -> str | None:
    """The user's name that the sidecar of hashed block *digest* recorded (``None``: none)."""
    try:
        with open(os.path.join(SHM, _names.sidecar_file(digest)), "rb") as f:
            return f.read().decode("utf-8", "surrogatepass")
    except (OSError, UnicodeDecodeError):
        return None


def list_named() -> Iterator[Listed]:
    """Every named posix object in /dev/shm (a snapshot); see the module docstring."""
    require_listing()
    readable = _names.PREFIX.lstrip("/") + "-n-"
    hashed = _names.PREFIX.lstrip("/") + "-h-"
    for entry in sorted(_entries()):
        path = os.path.join(SHM, entry)
        if entry.startswith(readable) and entry.endswith(".c"):
            yield _listed(entry[len(readable) : -2], path)
        elif entry.startswith(hashed):
            digest = entry[len(hashed) :]
            user = recorded_name(digest)
            if user is not None:
                # Only the cells' posix name hashes to this digest with this user name.
                if _names.is_cells_of(user, digest):
                    yield _listed(user, path)
                continue  # a semaphore of a recorded block, or a stray sidecar
            # Unrecorded: an older polysync's block (cells) or one of its semaphores
            # (those live under sem., so they are never here).
            yield _listed(
                "/" + entry,
                path,
                "its name was not recorded (made by an older polysync): shown by its "
                "POSIX name, which inspect and rm do not take",
            )


# -- what is in use ---------------------------------------------------------------------


def _in_use() -> set[str]:
    """The /dev/shm files of polysync that some running process maps or has open."""
    used: set[str] = set()
    marker = _names.PREFIX.lstrip("/") + "-"
    for pid in os.listdir("/proc"):  # this process too: it may use some itself
        if not pid.isdigit():
            continue
        # Gone meanwhile, or another user's (who cannot open objects of mode 0600).
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps", "rb") as f:
            for line in f:
                if marker.encode() in line:
                    path = line.split(None, 5)[-1].strip().decode("utf-8", "replace")
                    used.add(os.path.basename(path.removesuffix(" (deleted)")))
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith(SHM + "/") and marker in target:
                        used.add(os.path.basename(target))
    return used


def _live_trackers() -> set[str]:
    """The ids of the cleanup trackers listening now (Linux abstract sockets)."""
    stem = address("").lstrip("\0")
    live: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/net/unix", "rb") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[-1].startswith(b"@" + stem.encode()):
                live.add(fields[-1][1 + len(stem) :].decode())
    return live


def _waiter_alive(rest: str) -> bool:
    """Whether the process of the waiter named ``<pid>-<index>-<nonce hex>`` still runs."""
    try:
        pid_text, _index, nonce_text = rest.split("-")
        pid, nonce = int(pid_text), int(nonce_text, 16)
    except ValueError:
        return True  # not a name polysync makes: keep it
    return WaiterRegistry.alive((pid << 24) | int(_index), nonce)


def _candidates() -> list[tuple[str, str]]:
    """(entry, reason) for every file whose owner is gone; in-use files not checked yet."""
    anonymous = _names.PREFIX.lstrip("/") + "-a-"
    waiter = _names.PREFIX.lstrip("/") + "-w-"
    entries = sorted(_entries())
    # Read after the entries: an object's tracker listens before the object is made, so
    # every tracker of a listed object that still runs is seen.
    trackers = _live_trackers()
    found = []
    for entry in entries:
        bare = entry.removeprefix(_SEM)
        if bare.startswith(anonymous):
            tracker = bare[len(anonymous) :].split("-", 1)[0]
            if tracker not in trackers:
                found.append((entry, f"anonymous object; its cleanup tracker {tracker} is gone"))
        elif bare.startswith(waiter) and entry.startswith(_SEM):
            rest = bare[len(waiter) :]
            if not _waiter_alive(rest):
                found.append((entry, f"waiter semaphore of process {rest.split('-')[0]}, gone"))
    return found


def _prune_events(backend: SemaphoreBackend, dry_run: bool) -> list[Orphan]:
    """Parked waiters of named Events whose processes died, taken off their queues."""
    found = []
    for listed in list_named():
        if listed.kind is not Kind.EVENT or listed.note is not None:
            continue
        try:
            event = backend.open_event(backend.object_name(listed.name), create=False)
        except PolysyncError:
            continue  # unlinked meanwhile, or not a floor Event
        try:
            if not isinstance(event, DerivedEvent):
                continue
            dead = event.dead_waiters() if dry_run else event.prune()
        finally:
            event.close()
        if dead:
            found.append(
                Orphan(
                    f"{listed.name!r} (Event): {dead} parked waiter(s)",
                    "their processes are gone",
                )
            )
    return found


def collect(backend: SemaphoreBackend, dry_run: bool) -> list[Orphan]:
    """Remove (or, with *dry_run*, only find) what dead processes left in /dev/shm."""
    require_listing()
    import posix_ipc

    # Queues first: pruning a dead waiter also unlinks its semaphore, if it is still there.
    orphans = _prune_events(backend, dry_run)
    candidates = _candidates()
    if not candidates:
        return orphans
    used = _in_use()  # read after the candidates: a user that appears meanwhile is seen
    for entry, reason in candidates:
        if entry in used:
            continue
        if not dry_run:
            try:
                if entry.startswith(_SEM):
                    posix_ipc.unlink_semaphore("/" + entry[len(_SEM) :])
                else:
                    posix_ipc.unlink_shared_memory("/" + entry)
            except posix_ipc.ExistentialError:
                continue  # its tracker, or another gc, was first
        orphans.append(Orphan("/dev/shm/" + entry, reason))
    return orphans
