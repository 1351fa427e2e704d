"""The postgres backend's kernels: session advisory locks, and rows woken by ``NOTIFY``.

* **Lock, RLock**: the session advisory lock ``(classid, id)``, taken by
  ``lock_acquire`` in one round trip (a try, then a blocking wait in the server, bounded
  by ``lock_timeout`` when timed; the fencing token in the same call, from the lock's
  counter, which also tells whether the previous holder released: see
  :mod:`polysync.backends.postgres.sql`). Neither the acquire nor the release writes a
  row. The session that took it stays with the handle until the release; another
  thread of the process, or another handle of the same backend instance, releases it
  through that session.
* **Semaphore, BoundedSemaphore**: the count in the object's row; each permit taken is a
  row marked with the taker's liveness session, so a permit of a process that died
  (its session ended without a clean exit) is taken back by the next acquirer that
  finds the count at zero. Waiters wait for ``NOTIFY`` from a release.
* **Event**: a flag and a generation (a waiter returns once either says it was set).
* **Condition**: a row per waiter; ``notify(n)`` marks the first *n* live ones.
* **Barrier**: a row per waiting party; the arrival that completes the count trips it.

Every wait is woken by the server (the advisory lock's grant, or a ``NOTIFY`` that the
liveness thread hands to local waiters); waiters also look again every
``WATCH_SLICE`` seconds, for what no ``NOTIFY`` announces: a holder that died.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from polysync import _validate, errors
from polysync.backends.postgres.server import ANSWER_MARGIN, WATCH_SLICE, Prepared, milliseconds
from polysync.derived.locks import ConditionHooksOfALock, DepthOverLock
from polysync.errors import BrokenBarrierError, NotFoundError
from polysync.kernel import Holder, KernelState

if TYPE_CHECKING:
    import psycopg

    from polysync.backends.postgres.server import PostgresServer
    from polysync.kernel import LockKernel

_HOST = socket.gethostname()
#: The longest wait one ``lock_timeout`` can bound: 2**31 - 1 ms, in seconds.
LOCK_TIMEOUT_MAX = (2**31 - 1) / 1000


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Kernel:
    """What every postgres kernel shares: its object id, closing an anonymous one."""

    def __init__(self, server: PostgresServer, oid: int, anonymous: bool, what: str) -> None:
        self._server = server
        self._oid = oid
        self._anonymous = anonymous
        self._what = what
        self._s = server.schema
        self._closed = False

    def _waiting(self) -> int:
        """The waits of this object recorded in ``waiters`` by sessions still alive."""
        s = self._s
        count = self._one(
            f"SELECT count(*) FROM {s}.waiters w WHERE w.id = %s AND NOT w.notified "
            f"AND {s}.alive(w.pid, w.started)",
            self._oid,
        )
        return int(count or 0)

    def _gone(self) -> NotFoundError:
        return NotFoundError(f"{self._what} no longer exists on the server (unlinked)")

    def _one(self, sql: str, *params: object) -> Any:
        row = self._server.query(sql, params)
        return None if row is None else row[0]

    def _wait_for(
        self,
        deadline: float | None,
        check: Callable[[], bool],
        tick: Callable[[], object] | None,
        *,
        counted: bool = False,
    ) -> bool:
        """Wait until *check()* (called first, then at each NOTIFY about this object and
        every ``WATCH_SLICE`` s, after *tick*) is true: ``False`` at *deadline*.

        *counted*: the wait is a row of ``waiters`` meanwhile (``statistics().waiting``).
        """
        live = self._server.liveness
        event = live.subscribe(self._oid)
        seq = None
        try:
            if counted:
                pid, started = self._server.identity()
                seq = self._one(
                    f"INSERT INTO {self._s}.waiters (id, pid, started) VALUES (%s, %s, %s) "
                    "RETURNING seq",
                    self._oid,
                    pid,
                    started,
                )
            return self._wait_loop(deadline, check, tick, event)
        finally:
            live.unsubscribe(self._oid, event)
            if seq is not None:
                with contextlib.suppress(Exception):  # else it is found dead later
                    self._server.query(f"DELETE FROM {self._s}.waiters WHERE seq = %s", (seq,))

    def _wait_loop(
        self,
        deadline: float | None,
        check: Callable[[], bool],
        tick: Callable[[], object] | None,
        event: threading.Event,
    ) -> bool:
        while True:
            if check():
                return True
            left = _left(deadline)
            if left is not None and left <= 0:
                return False
            step = WATCH_SLICE if left is None else min(left, WATCH_SLICE)
            if not event.wait(step) and tick is not None:
                tick()
            event.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._anonymous and os.getpid() == self._server._pid:
            with contextlib.suppress(Exception):  # closing never fails (at exit too)
                pid, started = self._server.identity()
                self._server.query(f"SELECT {self._s}.close(%s, %s, %s)", (self._oid, pid, started))

    def discard(self) -> None:
        """``close()`` for a handle the GC dropped: done on a thread of its own."""
        if self._anonymous and not self._closed:
            threading.Thread(target=self.close, name="polysync-postgres-close", daemon=True).start()
        self._closed = True if not self._anonymous else self._closed


class PostgresLock(ConditionHooksOfALock, _Kernel):
    """A session advisory lock, fenced; released through the session that holds it."""

    def __init__(
        self,
        server: PostgresServer,
        oid: int,
        anonymous: bool,
        what: str,
        holders: dict[int, PostgresLock],
    ) -> None:
        super().__init__(server, oid, anonymous, what)
        self._holders = holders  # this backend instance's holding handles, by object id
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._state = threading.Lock()
        self.fencing_token: int | None = None
        self.owner_died = False
        self.lost = False
        self.on_lost: Callable[[], object] | None = None
        s = self._s
        self._acquire_statement = Prepared(
            b"polysync_lock_acquire", f"SELECT {s}.lock_acquire($1, $2, $3, $4)".encode()
        )
        self._release_statement = Prepared(
            b"polysync_lock_release", f"SELECT {s}.lock_release($1, $2)".encode()
        )

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if not blocking or timeout == 0:
            return self._attempt(0, None)
        if timeout is None:
            return self._attempt(-1, None)
        # lock_timeout counts int4 milliseconds (24.8 days): a longer wait goes by parts.
        deadline = time.monotonic() + timeout
        while True:
            part = min(timeout, LOCK_TIMEOUT_MAX)
            if self._attempt(milliseconds(part), part):
                return True
            timeout = deadline - time.monotonic()
            if timeout <= 0 or part < LOCK_TIMEOUT_MAX:
                return False

    def _attempt(self, wait_ms: int, timeout: float | None) -> bool:
        """One ``lock_acquire`` call: *wait_ms* 0 tries, -1 waits forever."""
        server = self._server
        who = f"{os.getpid()}:{_HOST}:{threading.get_ident()}"
        conn = server.take(timeout)
        told = server.acting_for.get(conn)
        # Who the session acts for is written (a transaction id) only when it changed.
        params = (self._oid, server.classid, wait_ms, None if told == who else who)
        try:
            if wait_ms <= 0:  # a try, or forever (psycopg cancels it on Ctrl-C)
                limit = server.answer_timeout if wait_ms == 0 else None
            else:  # the server's lock_timeout, and a margin for its answer
                limit = None if timeout is None else timeout + ANSWER_MARGIN
            found = server.value(conn, self._acquire_statement, params, limit)
            token = None if found is None else int(found)
        except BaseException:
            self._abandon(conn)
            raise
        if told != who and token is not None:
            server.recorded(conn, who)
        if token is None:
            server.give(conn)
            return False
        self._held(conn, int(token))
        return True

    def _abandon(self, conn: psycopg.Connection[Any]) -> None:
        """An acquire that failed or was interrupted: whatever the session got goes back."""
        server = self._server
        if conn.closed or conn.broken:
            server.discard(conn)  # the session ends: the server releases what it held
            return
        try:
            server.execute(
                conn,
                f"SELECT {self._s}.lock_abandon(%s, %s)",
                (self._oid, server.classid),
                server.answer_timeout,
            )
        except BaseException:
            server.discard(conn)
            raise
        server.give(conn)

    def _held(self, conn: psycopg.Connection[Any], token: int) -> None:
        died = token < 0
        with self._state:
            self._conn = conn
            self._pid = os.getpid()
            self.fencing_token = abs(token)
            self.owner_died = died
            self.lost = False
            self._holders[self._oid] = self
        self._server.liveness.watch(conn, partial(self._session_lost, conn))
        if died:
            errors.warn_owner_died(
                "the previous holder died holding this lock (its session ended without "
                "a release): this handle took it over; check the state it protects",
                self.release,
            )

    def _session_lost(self, conn: psycopg.Connection[Any]) -> None:
        """From the liveness thread: the server closed the session that holds this lock."""
        if self._conn is not conn:
            return
        self.lost = True
        callback = self.on_lost
        if callback is not None:
            callback()

    def _take_back(self) -> psycopg.Connection[Any] | None:
        with self._state:
            conn, self._conn = self._conn, None
            self.owner_died = False
            if conn is not None and self._holders.get(self._oid) is self:
                del self._holders[self._oid]
        if conn is not None and self._pid != os.getpid():
            return None  # held by the parent of this forked process: not ours
        return conn

    def release(self) -> None:
        conn = self._take_back()
        if conn is None:
            other = self._holders.get(self._oid)
            if other is not None and other is not self:
                other.release()  # another handle of this process holds it: any may release
                return
            if self.locked():
                raise errors.NotHeldError(
                    "this lock is held by another process (or another host): PostgreSQL "
                    "lets only the session that holds an advisory lock release it"
                )
            raise errors.lock_not_held()
        server = self._server
        server.unwatch(conn)
        try:
            released = server.value(
                conn, self._release_statement, (self._oid, server.classid), server.answer_timeout
            )
        except errors.BackendConnectionError:
            server.discard(conn)
            self._report_lost()
            raise errors.lease_lost() from None
        except BaseException:
            server.discard(conn)
            raise
        if released != b"t":
            server.discard(conn)
            self._report_lost()
            raise errors.lease_lost()
        server.give(conn)

    def _report_lost(self) -> None:
        if self.lost:
            return
        self.lost = True
        callback = self.on_lost
        if callback is not None:
            with contextlib.suppress(Exception):
                callback()

    def locked(self) -> bool:
        found = self._one(f"SELECT {self._s}.lock_held(%s, %s)", self._oid, self._server.classid)
        return bool(found)

    def statistics(self) -> KernelState:
        row = self._server.query(
            f"SELECT * FROM {self._s}.lock_state(%s, %s)",
            (self._oid, self._server.classid),
        )
        held, holder_text, fence, waiting = row if row is not None else (False, None, None, 0)
        holder = None
        if holder_text:
            pid, host, thread = str(holder_text).split(":", 2)
            holder = Holder(pid=int(pid), host=host, thread=int(thread))
        return KernelState(
            locked=bool(held),
            holder=holder,
            waiting=int(waiting),
            fencing_token=self.fencing_token,
            last_fencing_token=None if fence is None else int(fence),
        )

    def discard(self) -> None:
        """``close()`` for a handle the GC dropped: done on a thread of its own (it may
        end a session, and the GC may run in a thread that is using the pool)."""
        threading.Thread(target=self.close, name="polysync-postgres-close", daemon=True).start()

    def close(self) -> None:
        # A closed handle holds nothing: its session ends without a release, as if its
        # holder had died (the next acquirer is told so), like a handle left to the GC.
        conn = self._take_back()
        if conn is not None:
            self._server.unwatch(conn)  # a session gone with it needs no new one
            self._server.discard(conn)
        self.fencing_token = None
        self.lost = False
        super().close()


class PostgresRLock(DepthOverLock["PostgresLock"]):
    """Reentrancy per (process, thread) over a :class:`PostgresLock`; depth kept locally."""


class PostgresSemaphore(_Kernel):
    """A counting semaphore in a row; permits recorded with the taker's liveness session."""

    def __init__(
        self, server: PostgresServer, oid: int, anonymous: bool, what: str, bound: int | None
    ) -> None:
        super().__init__(server, oid, anonymous, what)
        self._bound = bound
        self._tokens: list[int] = []
        self._state = threading.Lock()
        self.fencing_token: int | None = None
        self.owner_died = False
        self.lost = False
        self.on_lost: Callable[[], object] | None = None

    def _try(self) -> bool:
        pid, started = self._server.identity()
        nonce = secrets.randbits(63)
        try:
            token = self._one(
                f"SELECT {self._s}.sem_acquire(%s, %s, %s, %s)", self._oid, pid, started, nonce
            )
        except BaseException:  # Ctrl-C: the statement may have taken a permit anyway
            with contextlib.suppress(Exception):
                self._server.query(f"SELECT {self._s}.sem_giveback(%s, %s)", (self._oid, nonce))
            raise
        if token is None:
            return False
        token = int(token)
        if token == 0:
            raise self._gone()
        with self._state:
            self._tokens.append(abs(token))
            self.fencing_token = abs(token)
            self.owner_died = self.owner_died or token < 0
        if token < 0:
            errors.warn_owner_died(
                "the previous holder of this permit died holding it (its session ended "
                "without a release): this handle took it over; check the state it protects",
                partial(self.release, 1),
            )
        return True

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if self._try():
            return True
        if not blocking or timeout == 0:
            return False
        return self._wait_for(_deadline(timeout), self._try, None, counted=True)

    def release(self, n: int = 1) -> None:
        with self._state:
            mine = [self._tokens.pop() for _ in range(min(n, len(self._tokens)))]
            died, self.owner_died = self.owner_died, False
        try:
            result = int(
                self._one(
                    f"SELECT {self._s}.sem_release(%s, %s, %s, %s)",
                    self._oid,
                    n,
                    _validate.MAX_VALUE,
                    mine,
                )
            )
        except BaseException:
            with self._state:
                self._tokens.extend(mine)
            raise
        if result < 0:
            with self._state:
                self._tokens.extend(mine)
                self.owner_died = died
            if result == -1:
                raise errors.over_released(self._bound or 0)
            raise _validate.headroom(n, -2 - result)

    def get_value(self) -> int:
        value = self._one(f"SELECT value FROM {self._s}.objects WHERE id = %s", self._oid)
        if value is None:
            raise self._gone()
        return int(value)

    def statistics(self) -> KernelState:
        row = self._server.query(
            f"SELECT value, fence FROM {self._s}.objects WHERE id = %s", (self._oid,)
        )
        value, fence = row if row is not None else (None, None)
        return KernelState(
            value=None if value is None else int(value),
            waiting=self._waiting(),
            fencing_token=self.fencing_token,
            last_fencing_token=None if fence is None else int(fence),
        )

    def close(self) -> None:
        self._tokens = []
        self.fencing_token = None
        self.owner_died = False
        super().close()


class PostgresEvent(_Kernel):
    """A flag and a generation in the object's row; ``set()`` sends a NOTIFY."""

    def set(self) -> None:
        s = self._s
        self._server.query(
            f"WITH u AS (UPDATE {s}.objects SET flag = true, generation = generation + 1 "
            f"WHERE id = %s RETURNING id) SELECT pg_notify(%s, u.id::text) FROM u",
            (self._oid, self._server.channel),
        )

    def clear(self) -> None:
        self._server.query(f"UPDATE {self._s}.objects SET flag = false WHERE id = %s", (self._oid,))

    def _read(self) -> tuple[bool, int]:
        row = self._server.query(
            f"SELECT flag, generation FROM {self._s}.objects WHERE id = %s", (self._oid,)
        )
        if row is None:
            raise self._gone()
        return bool(row[0]), int(row[1])

    def is_set(self) -> bool:
        return self._read()[0]

    def wait(self, timeout: float | None) -> bool:
        flag, generation = self._read()
        if flag:
            return True
        if timeout == 0:
            return False

        def check() -> bool:
            now_set, now_generation = self._read()
            return now_set or now_generation != generation

        return self._wait_for(_deadline(timeout), check, None, counted=True)

    def statistics(self) -> KernelState:
        return KernelState(is_set=self.is_set(), waiting=self._waiting())


class PostgresCondition(_Kernel):
    """A row per waiter, marked by ``notify``; dead waiters are skipped and passed over."""

    def wait(self, lock: LockKernel, timeout: float | None) -> bool:
        s, server = self._s, self._server
        pid, started = server.identity()
        seq = self._one(
            f"INSERT INTO {s}.waiters (id, pid, started) VALUES (%s, %s, %s) RETURNING seq",
            self._oid,
            pid,
            started,
        )
        state = lock.release_save()  # queued before the release: nothing is missed
        woken = False
        try:

            def check() -> bool:
                notified = self._one(f"SELECT notified FROM {s}.waiters WHERE seq = %s", seq)
                return notified is None or bool(notified)  # gone: taken for dead; wake

            def tick() -> None:  # pass on what was sent to waiters that died
                server.query(f"SELECT {s}.cond_notify(%s, 0)", (self._oid,))

            woken = self._wait_for(_deadline(timeout), check, tick)
        finally:
            # Leave the queue only with the lock back: a notify sent after the timeout
            # still reaches this waiter, so a caller that waits again loses nothing.
            try:
                lock.acquire_restore(state)
            finally:
                with contextlib.suppress(Exception):
                    taken = self._one(
                        f"DELETE FROM {s}.waiters WHERE seq = %s RETURNING notified", seq
                    )
                    woken = woken or bool(taken)
        return woken

    def notify(self, n: int) -> None:
        if n:
            self._server.query(
                f"SELECT {self._s}.cond_notify(%s, %s)", (self._oid, min(n, _validate.MAX_VALUE))
            )

    def notify_all(self) -> None:
        self._server.query(f"SELECT {self._s}.cond_notify(%s, -1)", (self._oid,))

    def statistics(self) -> KernelState:
        return KernelState(waiting=self._waiting())


class PostgresBarrier(_Kernel):
    """A row per waiting party; the arrival that completes the count trips it."""

    def __init__(
        self, server: PostgresServer, oid: int, anonymous: bool, what: str, parties: int
    ) -> None:
        super().__init__(server, oid, anonymous, what)
        self.parties = parties

    def _end(self, generation: int | None, outcome: str) -> None:
        self._server.query(
            f"SELECT {self._s}.barrier_end(%s, %s, %s)", (self._oid, generation, outcome)
        )

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        s, server = self._s, self._server
        deadline = _deadline(timeout)
        live = server.liveness
        event = live.subscribe(self._oid)
        try:
            while True:
                pid, started = server.identity()
                row = server.query(
                    f"SELECT * FROM {s}.barrier_arrive(%s, %s, %s, %s, %s)",
                    (self._oid, self.parties, pid, started, action is not None),
                )
                assert row is not None
                status, index, generation, dropped = (int(v) for v in row)
                if dropped and status >= 0:
                    self._told(dropped, generation, index, status)
                if status < 0:
                    raise BrokenBarrierError(
                        "the barrier is broken"
                        + (" (the party running its action died)" if dropped else "")
                    )
                if status == 1:
                    return index
                if status == 2:
                    try:
                        assert action is not None
                        action()
                    except BaseException:
                        self._end(generation, "broken")
                        raise
                    self._end(generation, "ok")
                    return index
                if status == 3:  # a trip under way: arrive in the next generation
                    moved = partial(self._moved_on, generation)
                    if not self._wait_for(deadline, moved, self._sweep):
                        self._end(None, "broken")
                        raise BrokenBarrierError("the barrier timed out and is now broken")
                    continue
                outcome = self._await(deadline, generation, index)
                if outcome == "again":
                    continue
                if outcome == "ok":
                    return index
                raise BrokenBarrierError(
                    "the barrier timed out and is now broken"
                    if outcome == "timeout"
                    else "the barrier was aborted or reset"
                )
        finally:
            live.unsubscribe(self._oid, event)

    def _sweep(self) -> None:
        """Break the barrier if the party running its action died (at each watch slice)."""
        self._server.query(f"SELECT {self._s}.barrier_sweep(%s)", (self._oid,))

    def _moved_on(self, generation: int) -> bool:
        now = self._one(f"SELECT generation FROM {self._s}.objects WHERE id = %s", self._oid)
        return now is None or int(now) != generation

    def _check(self, generation: int, index: int, leave: bool) -> str | None:
        pid, started = self._server.identity()
        outcome: str | None = self._one(
            f"SELECT {self._s}.barrier_check(%s, %s, %s, %s, %s, %s)",
            self._oid,
            generation,
            index,
            pid,
            started,
            leave,
        )
        return outcome

    def _await(self, deadline: float | None, generation: int, index: int) -> str:
        """The outcome of this waiting party: ``ok``, ``broken``, ``again`` or ``timeout``."""
        box: list[str] = []

        def check() -> bool:
            outcome = self._check(generation, index, False)
            if outcome is not None:
                box.append(outcome)
            return outcome is not None

        try:
            done = self._wait_for(deadline, check, self._sweep)
        except BaseException:
            with contextlib.suppress(Exception):
                self._check(generation, index, True)  # interrupted: not a timeout
            raise
        if done:
            return box[0]
        self._end(generation, "broken")  # a timeout breaks the barrier for everyone
        outcome = self._check(generation, index, True)
        return "ok" if outcome == "ok" else "timeout"

    def _told(self, dropped: int, generation: int, index: int, status: int) -> None:
        def leave() -> None:
            if status == 0:
                self._check(generation, index, True)

        errors.warn_owner_died(
            f"{dropped} {'parties' if dropped > 1 else 'party'} died waiting at this "
            "barrier: no longer counted, the barrier waits for others in their place; "
            "check what they were to do",
            leave,
        )

    def _status(self) -> tuple[int, bool]:
        s = self._s
        row = self._server.query(
            f"SELECT o.flag, (SELECT count(*) FROM {s}.parties p WHERE p.id = o.id "
            f"AND p.generation = o.generation AND p.outcome IS NULL) "
            f"FROM {s}.objects o WHERE o.id = %s",
            (self._oid,),
        )
        if row is None:
            raise self._gone()
        broken = bool(row[0])
        return (0 if broken else int(row[1])), broken

    def reset(self) -> None:
        self._end(None, "reset")

    def abort(self) -> None:
        self._end(None, "broken")

    def n_waiting(self) -> int:
        return self._status()[0]

    def broken(self) -> bool:
        return self._status()[1]

    def statistics(self) -> KernelState:
        waiting, broken = self._status()
        return KernelState(broken=broken, waiting=waiting)
