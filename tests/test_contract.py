"""The kernel contract: explicit, checked once at attach, and kept by the neutral layer.

Each test here failed on 955563b (before the contract was made explicit): the kernel
module held an implementation, optional features were probed per call, a closed handle
answered every attribute with a function, the hot path retried polysync's own errors,
a stored bound method outlived its handle badly, and an int timeout took a slow path.
"""

from __future__ import annotations

import ast
import gc
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest

import polysync
from polysync import kernel as contract
from polysync.backends.thread import ThreadBackend, ThreadSemaphore
from polysync.kernel import Capability, Kind, ObjectName

from .conftest import run_python

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def _context_of(backend: polysync.derived.BaseBackend) -> polysync.Context:
    return polysync.Context(backend.name, {}, backend)


# -- 1. the contract is explicit ----------------------------------------------------------


def test_the_kernel_module_is_data_and_protocols_importing_no_implementation() -> None:
    tree = ast.parse((ROOT / "polysync" / "kernel.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "enum", "collections", "dataclasses", "typing"}
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert "BaseBackend" not in classes  # the floor lives in polysync.derived


@pytest.mark.parametrize(
    "protocol",
    [
        contract.ForeverAcquire,
        contract.TimedAcquire,
        contract.RefusingRelease,
        contract.Discardable,
        contract.Fenced,
        contract.Leased,
        contract.OwnerDeath,
        contract.Introspectable,
    ],
    ids=lambda p: p.__name__,
)
def test_every_optional_feature_is_a_named_runtime_protocol(protocol: type) -> None:
    assert getattr(protocol, "_is_runtime_protocol", False)
    assert protocol.__doc__


def test_each_capability_names_the_protocol_its_kernels_must_satisfy() -> None:
    required = {cap: [(r.kinds, r.protocol) for r in cap.requires] for cap in Capability}
    assert (frozenset({Kind.RLOCK}), contract.OwnerDeath) in required[Capability.OWNER_DEATH]
    fenced = {k for kinds, proto in required[Capability.FENCING] for k in kinds}
    assert {Kind.LOCK, Kind.RLOCK, Kind.SEMAPHORE} <= fenced
    assert all(p is contract.Fenced for _, p in required[Capability.FENCING])
    assert all(p is contract.Leased for _, p in required[Capability.LEASES])


class _ClaimsFencing(ThreadBackend):
    name = "thread"
    capabilities = ThreadBackend.capabilities | {Capability.FENCING}


def test_a_kernel_short_of_its_declared_capability_is_refused_when_attached() -> None:
    ctx = _context_of(_ClaimsFencing())
    with pytest.raises(polysync.BackendError, match=r"declares 'fencing'.*kernel\.Fenced"):
        ctx.Lock()
    ctx.Event()  # kinds the capability does not cover open as before


def test_declaring_shared_cells_without_cells_kernel_fails_at_class_creation() -> None:
    with pytest.raises(TypeError, match="declares the shared-cells capability"):

        class _NoCells(polysync.derived.BaseBackend):
            name = "nocells"
            capabilities = frozenset({Capability.SHARED_CELLS})


class _Recording:
    """A kernel that logs every attribute looked up on it."""

    def __init__(self, inner: object, log: list[str]) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_log", log)

    def __getattribute__(self, attr: str) -> Any:
        if attr.startswith("__"):
            return object.__getattribute__(self, attr)
        object.__getattribute__(self, "_log").append(attr)
        return getattr(object.__getattribute__(self, "_inner"), attr)


class _RecordingBackend(ThreadBackend):
    log: ClassVar[list[str]] = []

    def open_lock(self, name: ObjectName, *, create: bool) -> contract.LockKernel:
        inner = super().open_lock(name, create=create)
        return _Recording(inner, self.log)  # type: ignore[return-value]  # a logging proxy


def test_optional_features_are_taken_at_attach_never_probed_per_call() -> None:
    ctx = _context_of(_RecordingBackend())
    lock = ctx.Lock()
    _RecordingBackend.log.clear()
    for _ in range(3):
        assert lock.acquire()
        lock.release()
        assert lock.acquire(timeout=1.0)
        lock.release()
        assert (lock.lost, lock.owner_died, lock.fencing_token) == (False, False, None)
    assert _RecordingBackend.log == [], "the handle looked things up on its kernel per call"


# -- 2. a closed handle holds nothing ------------------------------------------------------


@pytest.mark.parametrize("backend", ["thread", "posix"])
def test_a_closed_handle_answers_state_plainly_and_refuses_operations(backend: str) -> None:
    ctx = polysync.get_context(backend)
    lock, rlock, sem = ctx.Lock(), ctx.RLock(), ctx.BoundedSemaphore(2)
    barrier, event, cond = ctx.Barrier(3), ctx.Event(), ctx.Condition()
    for obj in (lock, rlock, sem, barrier, event, cond):
        obj.close()
        assert obj.closed
        with pytest.raises(polysync.ClosedError):
            obj.statistics()
    for held in (lock, rlock, sem):
        assert held.lost is False
        assert held.fencing_token is None
        for call in (held.acquire, held.release, lambda h=held: h.acquire(timeout=1)):
            with pytest.raises(polysync.ClosedError, match="is closed"):
                call()
    assert lock.owner_died is False
    assert rlock.owner_died is False
    assert barrier.parties == 3
    for call in (
        barrier.wait,
        barrier.reset,
        barrier.abort,
        lambda: barrier.n_waiting,
        lambda: barrier.broken,
        event.set,
        event.clear,
        event.is_set,
        event.wait,
        sem.get_value,
        lock.locked,
    ):
        with pytest.raises(polysync.ClosedError):
            call()


# -- 3. the hot path never swallows polysync's own errors ---------------------------------


class _FailingSemaphore(ThreadSemaphore):
    calls: ClassVar[list[str]] = []

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        _FailingSemaphore.calls.append("acquire")
        raise polysync.BackendConnectionError("the server went away")


class _FailingBackend(ThreadBackend):
    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> ThreadSemaphore:
        super().semaphore_kernel(name, value, create=create)
        return _FailingSemaphore(value)


@pytest.mark.parametrize(
    "call",
    [
        lambda lock: lock.acquire(),
        lambda lock: lock.__enter__(),
        lambda lock: lock.acquire(timeout=2),
        lambda lock: lock.acquire(timeout=2.0),
    ],
    ids=["acquire()", "with", "timeout=2", "timeout=2.0"],
)
def test_a_connection_error_is_raised_once_never_retried(
    call: Callable[[polysync.Lock], object],
) -> None:
    lock = _context_of(_FailingBackend()).Lock()
    _FailingSemaphore.calls.clear()
    with pytest.raises(polysync.BackendConnectionError):
        call(lock)
    assert _FailingSemaphore.calls == ["acquire"]


_DIE_HOLDING = """
import sys, polysync
lock = polysync.get_context("posix").RLock(name=sys.argv[1])
lock.acquire()
print("held", flush=True)
"""


@pytest.fixture
def dead_owners_rlock() -> Iterator[polysync.RLock]:
    import uuid

    name = f"pstest-{uuid.uuid4().hex[:10]}"
    ctx = polysync.get_context("posix")
    rlock = ctx.RLock(name=name)
    done = run_python(_DIE_HOLDING.replace("sys.argv[1]", repr(name)))
    assert done.stdout.strip() == "held", done.stderr
    assert rlock.locked()
    yield rlock
    ctx.unlink(name)


@pytest.mark.parametrize(
    "take",
    [lambda r: r.acquire(), lambda r: r.acquire(timeout=10), lambda r: r.__enter__()],
    ids=["acquire()", "acquire(timeout=10)", "with"],
)
def test_owner_died_made_an_error_raises_on_every_path_and_gives_the_lock_back(
    dead_owners_rlock: polysync.RLock, take: Callable[[polysync.RLock], object]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", polysync.OwnerDiedWarning)
        with pytest.raises(polysync.OwnerDiedWarning):
            take(dead_owners_rlock)
    assert not dead_owners_rlock._is_owned()
    assert not dead_owners_rlock.locked()
    assert not dead_owners_rlock.owner_died


def test_the_owner_died_warning_points_at_the_users_line(
    dead_owners_rlock: polysync.RLock,
) -> None:
    with pytest.warns(polysync.OwnerDiedWarning) as record:
        dead_owners_rlock.acquire()  # this line
    assert record[0].filename == __file__
    dead_owners_rlock.release()


# -- 4. a stored bound method keeps its handle ---------------------------------------------


@pytest.mark.parametrize(
    ("options", "kind"),
    [({}, "RLock"), ({}, "Lock"), ({}, "BoundedSemaphore")],
)
def test_a_stored_release_outlives_the_expression_that_made_it(
    options: dict[str, object], kind: str
) -> None:
    import uuid

    ctx = polysync.get_context("posix", **options)
    name = f"pstest-{uuid.uuid4().hex[:10]}"
    try:
        handle = getattr(ctx, kind)(name=name)
        assert handle.acquire()
        release = handle.release
        del handle
        gc.collect()
        release()
        assert getattr(ctx, kind)(name=name).acquire(False)
    finally:
        ctx.unlink(name)


def test_timer_and_exit_stack_release_what_they_were_given() -> None:
    ctx = polysync.get_context("posix")
    lock = ctx.Lock()
    assert lock.acquire()
    timer = threading.Timer(0.05, lock.release)
    timer.start()
    assert lock.acquire(timeout=10)  # the timer released it
    timer.join(10)
    rlock = ctx.RLock()
    with ExitStack() as stack:
        assert rlock.acquire()
        stack.callback(rlock.release)
    assert not rlock.locked()
    lock.release()


# -- 5. an int timeout takes the same path as a float -------------------------------------


def _python_calls(fn: Callable[[], object]) -> int:
    calls = [0]

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "call":
            calls[0] += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls[0] - 1  # the profiler sees fn itself


@pytest.mark.parametrize("backend", ["posix", "thread"])
def test_int_and_float_timeouts_cost_the_same_frames(backend: str) -> None:
    lock = polysync.get_context(backend).Lock()
    counts = {}
    for timeout in (1, 1.0):
        counts[type(timeout).__name__] = _python_calls(lambda t=timeout: lock.acquire(timeout=t))
        lock.release()
    assert counts["int"] == counts["float"], counts
    if backend == "posix":
        assert counts["float"] == 1  # acquire() itself, then C


# -- public objects say where they come from ----------------------------------------------


def test_public_objects_report_polysync() -> None:
    for public in (polysync.Lock, polysync.Statistics, polysync.NotHeldError, polysync.Context):
        assert public.__module__ == "polysync"
        assert repr(public) == f"<class 'polysync.{public.__name__}'>"
    assert polysync.get_context.__module__ == "polysync"
