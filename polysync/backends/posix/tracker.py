"""The cleanup tracker: unlinks anonymous POSIX objects once every process using them is gone.

One tracker process serves a tree of processes. Each process using an anonymous object
(or owning a waiter semaphore) holds one Unix-socket connection to it and sends
``+<type><posix name>`` when it opens an object and ``-<type><posix name>`` when it closes
it. The kernel closes a process's connection when the process exits, however it exits
(SIGKILL included), so the tracker sees every departure; an object whose count of
openers drops to zero is unlinked, and when the last connection closes the tracker
unlinks whatever is left and exits. The listening socket lives in Linux's abstract
namespace, so the tracker itself leaves nothing on disk.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import os
import secrets
import selectors
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque

ENV = "POLYSYNC_POSIX_TRACKER"
_FIRST_CONNECT = 30.0  # seconds a fresh tracker waits for its first client
#: Seconds a pickled anonymous object stays alive for its receiver, whoever exits meanwhile.
TRANSFER_GRACE = 5.0


def address(tracker_id: str) -> str:
    if sys.platform.startswith("linux"):
        return f"\0polysync-tracker-{tracker_id}"
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"polysync-tracker-{tracker_id}.sock")


def _unlink(entry: str) -> None:
    import posix_ipc

    kind, name = entry[0], entry[1:]
    try:
        if kind == "s":
            posix_ipc.unlink_semaphore(name)
        else:
            posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        pass


def serve(listener: socket.socket) -> None:
    """Run the tracker loop on an already listening socket until every client is gone."""
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    owned: dict[socket.socket, tuple[bytearray, Counter[str]]] = {}
    refs: Counter[str] = Counter()
    holds: list[tuple[float, str]] = []  # (expiry, entry): pickles in flight
    ever_connected = False

    def drop(entry: str, count: int) -> None:
        refs[entry] -= count
        if refs[entry] <= 0:
            del refs[entry]
            _unlink(entry)

    while True:
        if holds:
            timeout: float | None = max(0.0, holds[0][0] - time.monotonic())
        else:
            timeout = None if ever_connected else _FIRST_CONNECT
        events = sel.select(timeout=timeout)
        while holds and holds[0][0] <= time.monotonic():
            drop(heapq.heappop(holds)[1], 1)
        if not events and not ever_connected and not holds:
            break
        for key, _ in events:
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                sel.register(conn, selectors.EVENT_READ)
                owned[conn] = (bytearray(), Counter())
                ever_connected = True
                continue
            buf, mine = owned[sock]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                del owned[sock]
                for entry, count in mine.items():
                    drop(entry, count)
                continue
            buf += data
            *lines, rest = buf.split(b"\n")
            buf[:] = rest
            for raw in lines:
                line = raw.decode()
                op, entry = line[:1], line[1:]
                if op == "+":
                    mine[entry] += 1
                    refs[entry] += 1
                elif op == "-" and mine[entry] > 0:
                    mine[entry] -= 1
                    drop(entry, 1)
                elif op == "~":
                    refs[entry] += 1
                    heapq.heappush(holds, (time.monotonic() + TRANSFER_GRACE, entry))
        if ever_connected and not owned and not holds:
            break
    for entry in list(refs):
        _unlink(entry)


def main() -> None:
    # Ctrl-C in the terminal and a plain kill must not skip the cleanup.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    listener = socket.socket(fileno=int(sys.argv[1]))
    try:
        serve(listener)
    finally:
        listener.close()


class Client:
    """This process's connection to one tracker."""

    def __init__(self, tracker_id: str) -> None:
        self.tracker_id = tracker_id
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self._unsent: deque[str] = deque()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(address(tracker_id))

    def _send(self, line: str) -> None:
        self._sock.sendall(line.encode() + b"\n")

    def register(self, entry: str) -> None:
        with self._lock:
            self._held[entry] += 1
            self._send("+" + entry)
        self._flush()

    def unregister(self, entry: str) -> None:
        """Drop one use of *entry*; never waits.

        Handles close from finalizers, and the GC may run one in a thread that holds
        ``_lock`` right now: the entry is queued, and whoever holds the lock sends it
        after letting go.
        """
        self._unsent.append(entry)
        self._flush()

    def _flush(self) -> None:
        while self._unsent and self._lock.acquire(blocking=False):
            try:
                while self._unsent:
                    entry = self._unsent.popleft()
                    if self._held[entry] > 0:
                        self._held[entry] -= 1
                        with contextlib.suppress(OSError):
                            self._send("-" + entry)
            finally:
                self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._sock.close()

    def hold_for_transfer(self, entry: str) -> None:
        """Keep *entry* alive for TRANSFER_GRACE seconds, even if every user exits."""
        with self._lock:
            self._send("~" + entry)
        self._flush()

    def reconnect_after_fork(self) -> None:
        """In a forked child: drop the parent's connection, declare what we inherited."""
        self._lock = threading.Lock()
        self._sock.close()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(address(self.tracker_id))
            for entry, count in self._held.items():
                for _ in range(count):
                    self._send("+" + entry)
        except OSError:
            pass


_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()
_own_id: str | None = None


def _start() -> str:
    tracker_id = secrets.token_hex(6)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address(tracker_id))
    listener.listen(128)
    # polysync/backends/posix/tracker.py -> the folder holding the polysync package
    package_root = os.path.abspath(__file__)
    for _ in range(4):
        package_root = os.path.dirname(package_root)
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from polysync.backends.posix.tracker import main; main()"
    )
    # The listener reaches the tracker as a dup2() made in the child: it is never
    # inheritable here, so a process another thread starts meanwhile cannot keep it open.
    fd = listener.fileno()
    target = 3 if fd != 3 else 4
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", code, str(target)],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, fd, target),  # first: fd may be 0 or 1
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            ],
            setsid=True,
        )
    finally:
        listener.close()
    # Reap it when it ends, so it never lingers as a zombie of a long-lived parent.
    threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
    os.environ[ENV] = tracker_id
    return tracker_id


def client(tracker_id: str | None = None) -> Client:
    """The connection to *tracker_id*, or to this process tree's own tracker (started on need)."""
    global _own_id
    with _clients_lock:
        if tracker_id is None:
            tracker_id = _own_id or os.environ.get(ENV)
            if tracker_id is not None and tracker_id not in _clients:
                try:
                    _clients[tracker_id] = Client(tracker_id)
                except OSError:
                    tracker_id = None
            if tracker_id is None:
                tracker_id = _start()
            _own_id = tracker_id
        found = _clients.get(tracker_id)
        if found is None:
            found = _clients[tracker_id] = Client(tracker_id)
        return found


def own_tracker_id() -> str:
    return client().tracker_id


def _close_all() -> None:
    # At exit the kernel would close the connections anyway; closing them here keeps
    # interpreter shutdown free of ResourceWarnings.
    for c in list(_clients.values()):
        c.close()


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()
    for c in _clients.values():
        c.reconnect_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)

if __name__ == "__main__":
    main()
