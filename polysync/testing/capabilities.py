"""The conformance suite's tests of what every backend promises beyond the primitives' API.

Some hold for every backend (a closed handle holds nothing; anonymous objects are gone
once unused; ``statistics()`` answers); the others prove a declared
:class:`~polysync.Capability` and skip, naming it, where it is not declared: fencing
tokens, one object seen from separate hosts, recovery from a holder killed with
SIGKILL, shared cells, listing named objects, collecting orphans.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, cast

import pytest

import polysync
from polysync import Capability
from polysync.errors import NotFoundError
from polysync.kernel import Kind, ObjectName, Orphan, SemaphoreBackend
from polysync.testing import _children
from polysync.testing.helpers import PROMPT, SHORT, Child, SuiteBase, eventually, in_thread, require

__all__ = [
    "CleanupTests",
    "ClosedHandleTests",
    "CrossHostTests",
    "FencingTests",
    "LeaseTests",
    "ListingTests",
    "OrphanCollectionTests",
    "OwnerDeathTests",
    "SharedCellsTests",
    "StatisticsTests",
]

_MAKERS: dict[str, Callable[[polysync.Context], Any]] = {
    "Lock": lambda ctx: ctx.Lock(),
    "RLock": lambda ctx: ctx.RLock(),
    "Semaphore": lambda ctx: ctx.Semaphore(2),
    "BoundedSemaphore": lambda ctx: ctx.BoundedSemaphore(2),
    "Event": lambda ctx: ctx.Event(),
    "Condition": lambda ctx: ctx.Condition(ctx.Lock()),
    "Barrier": lambda ctx: ctx.Barrier(2),
}

#: The constructor parameters each kind is reopened with (what _MAKERS made).
_PARAMS: dict[str, tuple[Any, ...]] = {
    "Semaphore": (2,),
    "BoundedSemaphore": (2,),
    "Barrier": (2, None, None),
    "Condition": (None,),
}


def _reopen(context: polysync.Context, kind: str, name: ObjectName) -> Any:
    """Open the existing object *name* as *kind* (create=False), as unpickling does."""
    return getattr(polysync, kind)._open_kernel(context, name, _PARAMS.get(kind, ()), False)


def _gone(context: polysync.Context, kind: str, name: ObjectName) -> bool:
    try:
        kernel = _reopen(context, kind, name)
    except NotFoundError:
        return True
    kernel.close()
    return False


def _wait_until_gone(context: polysync.Context, kind: str, name: ObjectName) -> None:
    """Fail unless the object is gone within the backend's ``cleanup_bound``.

    Each check opens the object, which is a use of it: the checks back off, doubling
    the pause, so a backend that reclaims objects after an idle time gets that time;
    the last check falls on the bound itself.
    """
    bound = context.backend.cleanup_bound
    deadline = time.monotonic() + bound
    pause = 0.05
    while not _gone(context, kind, name):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(
                f"the anonymous {kind} was still there {bound} s after its last user "
                "closed it (the backend's cleanup_bound)"
            )
        time.sleep(min(pause, left))
        pause *= 2


def _held_in_a_child(
    context: polysync.Context, kind: str
) -> tuple[polysync.Statistics, Callable[[], Any]]:
    """What a fresh handle's ``statistics()`` says while a child process holds *kind*.

    Returns the snapshot and a function that lets the child go and returns the
    ``fencing_token`` the child held it with.
    """
    obj, held, go = _MAKERS[kind](context), context.Event(), context.Event()
    child = Child(_children.hold_with_token, obj, held, go, PROMPT)
    try:
        assert held.wait(PROMPT), f"the child did not acquire the {kind}"
        fresh = pickle.loads(pickle.dumps(obj))  # a handle that holds nothing
        try:
            stats = fresh.statistics()
        finally:
            fresh.close()
    except BaseException:
        go.set()
        raise

    def finish() -> Any:
        go.set()
        return child.result()

    return stats, finish


class ClosedHandleTests(SuiteBase):
    """A closed handle holds nothing and refuses every operation (every backend)."""

    @pytest.mark.parametrize("kind", list(_MAKERS))
    def test_closed_handle_holds_nothing(self, context: polysync.Context, kind: str) -> None:
        obj = _MAKERS[kind](context)
        if hasattr(obj, "acquire"):
            assert obj.acquire(timeout=PROMPT)
        obj.close()
        obj.close()  # closing twice is harmless
        assert obj.closed
        with pytest.raises(polysync.ClosedError):
            obj.statistics()
        with pytest.raises(polysync.ClosedError):
            pickle.dumps(obj)
        assert "closed" in repr(obj)
        if kind in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
            assert obj.lost is False
            assert obj.fencing_token is None
            for call in (obj.acquire, obj.release, lambda: obj.acquire(timeout=1)):
                with pytest.raises(polysync.ClosedError):
                    call()
        if kind in ("Lock", "RLock"):
            assert obj.owner_died is False
            with pytest.raises(polysync.ClosedError):
                obj.locked()
        if kind == "Event":
            for call in (obj.set, obj.clear, obj.is_set, lambda: obj.wait(0)):
                with pytest.raises(polysync.ClosedError):
                    call()
        if kind == "Barrier":
            assert obj.parties == 2
            for call in (obj.wait, obj.reset, obj.abort, lambda: obj.broken):
                with pytest.raises(polysync.ClosedError):
                    call()


class CleanupTests(SuiteBase):
    """Anonymous objects are gone once every user closed them or exited (every backend).

    "Gone" means the backend no longer opens the object: it raises NotFoundError. A
    backend may take up to its declared ``cleanup_bound`` seconds.
    """

    @pytest.mark.parametrize("kind", list(_MAKERS))
    def test_anonymous_object_is_gone_once_closed(
        self, context: polysync.Context, kind: str
    ) -> None:
        obj = _MAKERS[kind](context)
        name = obj._object_name
        assert not _gone(context, kind, name)  # while open, it can be opened again
        obj.close()
        if kind == "Condition":
            obj.lock.close()
        _wait_until_gone(context, kind, name)

    @pytest.mark.polysync_processes
    def test_anonymous_object_is_gone_once_every_process_is_done(
        self, context: polysync.Context
    ) -> None:
        require(context, Capability.CROSS_PROCESS)
        lock = context.Lock()
        name = lock._object_name
        held, go = context.Event(), context.Event()
        child = Child(_children.hold_until, lock, held, go, PROMPT)
        assert held.wait(PROMPT)
        lock.close()  # the child still uses it
        assert not _gone(context, "Lock", name)
        go.set()
        assert child.result() is True
        _wait_until_gone(context, "Lock", name)


class StatisticsTests(SuiteBase):
    """``statistics()`` reports kind, name and state (every backend; ``None``: not known)."""

    def test_lock_statistics(self, context: polysync.Context) -> None:
        for kind in ("Lock", "RLock"):
            lock = _MAKERS[kind](context)
            stats = lock.statistics()
            assert (stats.kind, stats.name, stats.backend) == (
                getattr(polysync, kind)._kind.value,
                None,
                context.name,
            )
            assert stats.locked is False
            assert stats.holder is None
            with lock:
                stats = lock.statistics()
                assert stats.locked is True
                if stats.holder is not None and stats.holder.pid is not None:
                    assert stats.holder.pid == os.getpid()
                if stats.holder is not None and stats.holder.thread is not None:
                    assert stats.holder.thread == threading.get_ident()
            assert isinstance(stats.as_dict(), dict)

    def test_waiting_is_counted_where_known(self, context: polysync.Context) -> None:
        event = context.Event()
        assert event.statistics().is_set is False
        thread, out = in_thread(lambda: event.wait(PROMPT))
        if event.statistics().waiting is not None:
            eventually(lambda: event.statistics().waiting == 1, "the waiter is counted")
        event.set()
        thread.join(PROMPT)
        assert out == [True]
        assert event.statistics().is_set is True

    def test_semaphore_barrier_condition_statistics(self, context: polysync.Context) -> None:
        sem = context.BoundedSemaphore(3)
        sem.acquire()
        stats = sem.statistics()
        assert stats.kind == "bounded_semaphore"
        if Capability.READABLE_VALUE in context.capabilities:
            assert stats.value == 2
        barrier = context.Barrier(3)
        stats = barrier.statistics()
        assert (stats.parties, stats.broken, stats.waiting) == (3, False, 0)
        barrier.abort()
        assert barrier.statistics().broken is True
        cond = context.Condition()
        assert cond.statistics().kind == "condition"

    def test_named_objects_report_their_name(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        assert context.Semaphore(1, name=name).statistics().name == name


class FencingTests(SuiteBase):
    """Every acquisition carries a token that strictly increases per object (``fencing``)."""

    # Not autouse: fixtures of a class reach every test of BackendSuite through the MRO.
    @pytest.fixture
    def fencing(self, context: polysync.Context) -> None:
        require(context, Capability.FENCING)

    @pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore"])
    def test_tokens_strictly_increase_across_holders(
        self, context: polysync.Context, kind: str, fencing: None
    ) -> None:
        first = _MAKERS[kind](context)
        second = pickle.loads(pickle.dumps(first))
        assert first.fencing_token is None  # nothing acquired yet
        tokens = []
        for holder in (first, second, first, second):
            assert holder.acquire(timeout=PROMPT)
            tokens.append(holder.fencing_token)
            holder.release()
        thread, out = in_thread(lambda: _children.acquire_token(second, PROMPT))
        thread.join(PROMPT)
        tokens += out
        assert all(isinstance(t, int) for t in tokens), tokens
        assert tokens == sorted(set(tokens)), f"not strictly increasing: {tokens}"

    def test_reentry_keeps_the_token(self, context: polysync.Context, fencing: None) -> None:
        rlock = context.RLock()
        with rlock:
            token = rlock.fencing_token
            with rlock:
                assert rlock.fencing_token == token

    @pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore"])
    def test_statistics_report_the_latest_token_to_any_handle(
        self, context: polysync.Context, kind: str, fencing: None
    ) -> None:
        holder = _MAKERS[kind](context)
        other = pickle.loads(pickle.dumps(holder))
        assert other.statistics().last_fencing_token is None  # nothing granted yet
        assert holder.acquire(timeout=PROMPT)
        stats = other.statistics()
        assert stats.fencing_token is None  # the asking handle holds nothing
        assert stats.last_fencing_token == holder.fencing_token
        holder.release()
        # A release grants nothing: the latest token stays.
        assert other.statistics().last_fencing_token == holder.fencing_token

    @pytest.mark.polysync_processes
    @pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore"])
    def test_a_fresh_handle_sees_the_token_of_a_holder_in_another_process(
        self, context: polysync.Context, kind: str, fencing: None
    ) -> None:
        require(context, Capability.CROSS_PROCESS)
        stats, finish = _held_in_a_child(context, kind)
        token = finish()
        assert isinstance(token, int)
        assert stats.fencing_token is None
        assert stats.last_fencing_token == token

    @pytest.mark.polysync_processes
    def test_tokens_increase_across_processes(
        self, context: polysync.Context, fencing: None
    ) -> None:
        require(context, Capability.CROSS_PROCESS)
        lock = context.Lock()
        assert lock.acquire(timeout=PROMPT)
        mine = lock.fencing_token
        lock.release()
        theirs = Child(_children.acquire_token, lock, PROMPT).result()
        assert lock.acquire(timeout=PROMPT)
        assert isinstance(mine, int)
        assert mine < theirs < (lock.fencing_token or 0)
        lock.release()


class CrossHostTests(SuiteBase):
    """Separate clients, standing in for hosts, see one object (``cross-host``).

    The ``other_host`` fixture is a second context on a backend instance of its own
    (its own connections and client identity). Override it to use a client that
    reaches the server another way.
    """

    @pytest.fixture
    def other_host(self, context: polysync.Context) -> polysync.Context:
        require(context, Capability.CROSS_HOST)
        backend = type(context.backend)(**context.backend.picklable_settings())
        return polysync.Context(context.name, dict(context.backend.picklable_settings()), backend)

    def test_a_lock_excludes_the_other_host(
        self, context: polysync.Context, other_host: polysync.Context, name: str
    ) -> None:
        require(context, Capability.NAMED)
        here, there = context.Lock(name=name), other_host.Lock(name=name)
        assert here.acquire(timeout=PROMPT)
        assert there.acquire(timeout=SHORT) is False
        thread, out = in_thread(lambda: there.acquire(timeout=PROMPT))
        time.sleep(SHORT)
        here.release()
        thread.join(PROMPT)
        assert out == [True]
        if Capability.FENCING in context.capabilities:
            assert here.fencing_token is not None
            assert there.fencing_token is not None
            assert there.fencing_token > here.fencing_token
        there.release()

    def test_an_rlock_is_not_owned_by_the_same_thread_on_another_host(
        self, context: polysync.Context, other_host: polysync.Context, name: str
    ) -> None:
        require(context, Capability.NAMED)
        here, there = context.RLock(name=name), other_host.RLock(name=name)
        with here:
            assert there.acquire(timeout=SHORT) is False
            with pytest.raises(polysync.NotHeldError):
                there.release()

    def test_event_semaphore_and_barrier_cross_hosts(
        self, context: polysync.Context, other_host: polysync.Context, name: str
    ) -> None:
        require(context, Capability.NAMED)
        event = context.Event(name=f"{name}-e")
        thread, out = in_thread(lambda: event.wait(PROMPT))
        other_host.Event(name=f"{name}-e").set()
        thread.join(PROMPT)
        assert out == [True]
        sem, far = context.Semaphore(1, name=f"{name}-s"), other_host.Semaphore(1, name=f"{name}-s")
        assert sem.acquire(timeout=PROMPT)
        assert far.acquire(timeout=SHORT) is False
        sem.release()
        assert far.acquire(timeout=PROMPT)
        barrier = context.Barrier(2, name=f"{name}-b", timeout=PROMPT)
        thread, out = in_thread(lambda: barrier.wait())
        index = other_host.Barrier(2, name=f"{name}-b", timeout=PROMPT).wait()
        thread.join(PROMPT)
        assert sorted([index, *out]) == [0, 1]
        for suffix in ("-e", "-s", "-b"):
            context.unlink(name + suffix)


class OwnerDeathTests(SuiteBase):
    """A killed holder (SIGKILL, TerminateProcess) is recovered by the next acquirer (owner-death).

    The acquirer waits at most ``recovery_timeout`` seconds (a fixture: override it for
    a backend whose bound is a lease of another length).
    """

    @pytest.fixture
    def recovery_timeout(self) -> float:
        return PROMPT * 3

    @pytest.mark.polysync_processes
    def test_rlock_of_a_sigkilled_holder_is_recovered(
        self, context: polysync.Context, recovery_timeout: float
    ) -> None:
        require(context, Capability.OWNER_DEATH)
        require(context, Capability.CROSS_PROCESS)
        rlock, held, go = context.RLock(), context.Event(), context.Event()
        child = Child(_children.hold_until, rlock, held, go, PROMPT * 6)
        assert held.wait(PROMPT)
        child.process.kill()  # SIGKILL; TerminateProcess on Windows
        child.process.join(PROMPT)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert rlock.acquire(timeout=recovery_timeout) is True
        assert any(issubclass(w.category, polysync.OwnerDiedWarning) for w in caught)
        assert rlock.owner_died
        assert rlock._is_owned()
        rlock.release()
        assert not rlock.owner_died
        assert rlock.acquire(timeout=PROMPT)
        rlock.release()


class LeaseTests(SuiteBase):
    """A holder frozen past its lease loses it, and learns so; the lease left shows (``leases``)."""

    @pytest.fixture
    def recovery_timeout(self) -> float:
        return PROMPT * 3

    @pytest.fixture
    def lease_seconds(self, context: polysync.Context) -> float | None:
        """The lease of the primitives the suite makes (``None``: only ``> 0`` is checked).

        By default the backend's ``lease`` setting, where it has one: override it for a
        backend whose lease is set another way.
        """
        value = context.backend.settings.get("lease")
        return float(value) if isinstance(value, int | float) else None

    @pytest.mark.polysync_processes
    @pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
    def test_a_fresh_handle_sees_the_lease_left_of_a_holder_in_another_process(
        self, context: polysync.Context, kind: str, lease_seconds: float | None
    ) -> None:
        require(context, Capability.LEASES)
        require(context, Capability.CROSS_PROCESS)
        stats, finish = _held_in_a_child(context, kind)
        finish()
        assert stats.lease_remaining is None  # the asking handle holds nothing
        left = stats.holder_lease_remaining
        assert left is not None, "holder_lease_remaining is None while a child holds it"
        assert left > 0, left
        if lease_seconds is not None:
            assert left <= lease_seconds, (left, lease_seconds)

    @pytest.mark.polysync_processes
    @pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")
    def test_a_frozen_holder_loses_its_lease_and_is_told(
        self, context: polysync.Context, recovery_timeout: float
    ) -> None:
        require(context, Capability.LEASES)
        require(context, Capability.CROSS_PROCESS)
        lock, held, go = context.Lock(), context.Event(), context.Event()
        child = Child(_children.hold_and_report_loss, lock, held, go, PROMPT * 6)
        assert held.wait(PROMPT)
        assert child.process.pid is not None
        os.kill(child.process.pid, signal.SIGSTOP)  # its renewals stop with it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
                assert lock.acquire(timeout=recovery_timeout) is True
            go.set()
        finally:
            os.kill(child.process.pid, signal.SIGCONT)
        assert child.result() == [True, "LeaseLostError"]
        lock.release()


class SharedCellsTests(SuiteBase):
    """``cells_kernel`` (``shared-cells``): shared 64-bit cells, an existing block whole."""

    @pytest.fixture
    def cells_backend(self, context: polysync.Context) -> SemaphoreBackend:
        require(context, Capability.SHARED_CELLS)
        # Declaring shared-cells is the promise that the backend has cells_kernel().
        return cast(SemaphoreBackend, context.backend)

    def test_cells_are_shared_zeroed_and_whole(
        self, context: polysync.Context, cells_backend: SemaphoreBackend, name: str
    ) -> None:
        require(context, Capability.NAMED)
        where = cells_backend.object_name(name).child("c")
        cells, created = cells_backend.cells_kernel(where, 10, create=True)
        try:
            assert created is True
            assert len(cells) >= 10  # a backend may round a block up (windows: to a page)
            assert [cells[i] for i in range(10)] == [0] * 10
            again, created_again = cells_backend.cells_kernel(where, 4, create=True)
            try:
                assert created_again is False
                assert len(again) == len(cells)  # an existing block is returned whole
                cells[9] = -(2**63)
                cells[0] = 2**63 - 1
                assert (again[9], again[0]) == (-(2**63), 2**63 - 1)
            finally:
                cells_backend.close_cells(again)
        finally:
            cells_backend.close_cells(cells)
            assert cells_backend.unlink(where) is True
        assert cells_backend.unlink(where) is False
        with pytest.raises(NotFoundError):
            cells_backend.cells_kernel(where, 10, create=False)


class ListingTests(SuiteBase):
    """``list_primitives`` (``listing``): a named object is listed, with its kind, till unlinked."""

    def test_a_named_object_is_listed_until_unlinked(
        self, context: polysync.Context, name: str
    ) -> None:
        require(context, Capability.LISTING)
        require(context, Capability.NAMED)
        sem = context.BoundedSemaphore(3, name=name)
        try:
            listed = {entry.name: entry for entry in context.list_objects()}
            assert name in listed
            assert listed[name].kind is Kind.BOUNDED_SEMAPHORE
            assert listed[name].parameter == 3
            anonymous = context.Lock()
            try:
                names = {entry.name for entry in context.list_objects()}
                assert len(names) == len(listed)  # anonymous objects are not listed
            finally:
                anonymous.close()
        finally:
            sem.close()
            context.unlink(name)
        assert name not in {entry.name for entry in context.list_objects()}


class OrphanCollectionTests(SuiteBase):
    """``collect_orphans`` (``orphan-collection``): never what a live handle uses."""

    def test_collecting_spares_live_objects(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.ORPHAN_COLLECTION)
        lock, event = context.Lock(), context.Event()
        named = (
            context.Semaphore(2, name=name) if Capability.NAMED in context.capabilities else None
        )
        try:
            assert lock.acquire(timeout=SHORT)
            thread, waited = in_thread(lambda: event.wait(PROMPT))
            eventually(lambda: event.statistics().waiting in (1, None), "the waiter parks")
            for dry_run in (True, False):
                for orphan in context.collect_orphans(dry_run=dry_run):
                    assert isinstance(orphan, Orphan)
                    assert orphan.what
                    assert orphan.reason
            event.set()
            thread.join(PROMPT)
            assert waited == [True]
            lock.release()
            assert lock.acquire(timeout=SHORT)  # still the same, working object
            lock.release()
            if named is not None:
                assert named.acquire(timeout=SHORT)
                named.release()
        finally:
            lock.close()
            event.close()
            if named is not None:
                named.close()
                context.unlink(name)
