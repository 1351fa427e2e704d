"""Tests of :mod:`polysync.instrument` (listeners on real posix and redis primitives) and of
the ``polysync`` loggers (takeovers, lost leases, reconnects) on real events."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import polysync
from polysync import instrument
from polysync.instrument import Observation

from .redis_servers import RedisServer
from .test_cli import _held_by_child

pytestmark = pytest.mark.timeout(120)

POSIX = pytest.mark.skipif(
    not any(name == "posix" and ok for name, ok, _ in polysync.available_backends()),
    reason="the posix backend does not run here",
)


class Recorder:
    """A listener keeping what it was told, with an event per kind of observation."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []
        self._lock = threading.Lock()
        self.got: dict[str, threading.Event] = {}

    def __call__(self, observation: Observation) -> None:
        with self._lock:
            self.seen.append(observation)
            self.got.setdefault(observation.event, threading.Event()).set()

    def wait_for(self, event: str, timeout: float = 10.0) -> bool:
        with self._lock:
            flag = self.got.setdefault(event, threading.Event())
        return flag.wait(timeout)

    def of(self, name: str | None, *events: str) -> list[Observation]:
        with self._lock:
            return [o for o in self.seen if o.name == name and (not events or o.event in events)]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    with instrument.listening(rec):
        yield rec
    assert not instrument.active


@pytest.fixture
def name() -> Iterator[str]:
    stem = f"ins-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield stem
    if any(n == "posix" and ok for n, ok, _ in polysync.available_backends()):
        polysync.get_context("posix").unlink(stem)


# -- zero cost: nobody listening, the kernel's own calls are bound --------------------------


@POSIX
@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore"])
def test_without_a_listener_handles_call_their_kernel_directly(kind: str) -> None:
    ctx = polysync.get_context("posix")
    obj = getattr(ctx, kind)()
    kernel = obj._kernel
    try:
        assert not instrument.active
        assert obj._acquire_forever == kernel.acquire_forever  # the C call itself, no wrapper
        assert obj._release == kernel.release
        rec = Recorder()
        with instrument.listening(rec):
            assert obj._acquire_forever != kernel.acquire_forever
            later = getattr(ctx, kind)()  # opened while listening: timed from the start
            with obj, later:
                pass
            assert [o.event for o in rec.seen] == ["acquired", "acquired", "released", "released"]
        assert obj._acquire_forever == kernel.acquire_forever  # unbound again
        assert later._acquire_forever == later._kernel.acquire_forever
        later.close()
        with obj:
            pass
        assert len(rec.seen) == 4  # nothing reported once unsubscribed
    finally:
        obj.close()


# -- a real listener on posix -----------------------------------------------------------------


@POSIX
def test_a_listener_sees_waits_holds_and_timeouts_on_posix(recorder: Recorder, name: str) -> None:
    ctx = polysync.get_context("posix")
    mine, other = ctx.Lock(name=name), ctx.Lock(name=name)
    try:
        assert other.acquire()
        assert mine.acquire(timeout=0.1) is False
        releaser = threading.Timer(0.3, other.release)
        releaser.start()
        assert mine.acquire()  # waits for the timer's release
        time.sleep(0.05)
        mine.release()
        releaser.join()
    finally:
        mine.close()
        other.close()
    events = [(o.event, o.kind, o.backend) for o in recorder.of(name)]
    assert events == [
        ("acquired", "lock", "posix"),  # other's
        ("timeout", "lock", "posix"),  # mine gave up
        ("released", "lock", "posix"),  # other's, from the timer
        ("acquired", "lock", "posix"),  # mine, once released
        ("released", "lock", "posix"),
    ]
    _, timeout, held_other, waited, held = recorder.of(name)
    assert timeout.seconds is not None
    assert timeout.seconds >= 0.09
    assert waited.seconds is not None
    assert held_other.seconds is not None
    assert held.seconds is not None
    assert waited.seconds >= 0.1  # it waited for the timer (0.3 s after the timeout)
    assert held.seconds >= 0.04
    assert held_other.seconds >= 0.35


@POSIX
def test_rlock_and_semaphore_holds_are_counted_once_per_hold(recorder: Recorder) -> None:
    ctx = polysync.get_context("posix")
    rlock, sem = ctx.RLock(), ctx.Semaphore(3)
    try:
        with rlock, rlock:  # reentry: one hold
            pass
        sem.acquire()
        sem.acquire()
        sem.release(2)
        sem.release()  # a release with no acquire of this handle: a hold of unknown length
    finally:
        rlock.close()
        sem.close()
    kinds = [(o.kind, o.event, o.seconds is None) for o in recorder.seen]
    assert kinds == [
        ("rlock", "acquired", False),
        ("rlock", "acquired", False),
        ("rlock", "released", False),
        ("semaphore", "acquired", False),
        ("semaphore", "acquired", False),
        ("semaphore", "released", False),
        ("semaphore", "released", False),
        ("semaphore", "released", True),
    ]


@POSIX
def test_a_takeover_is_reported_and_logged(
    recorder: Recorder, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = polysync.get_context("posix")
    with _held_by_child("posix", {}, "lock", name) as child:
        os.kill(child.pid, signal.SIGKILL)
        lock = ctx.Lock(name=name)
        try:
            with (
                caplog.at_level(logging.WARNING, logger="polysync"),
                pytest.warns(polysync.OwnerDiedWarning),
            ):
                assert lock.acquire(timeout=10)
            assert lock.owner_died
            lock.release()
        finally:
            lock.close()
    assert [o.event for o in recorder.of(name)] == ["acquired", "takeover", "released"]
    records = [r for r in caplog.records if r.getMessage().startswith("takeover:")]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].name.startswith("polysync.backends.posix")
    assert f"process {child.pid} died holding this lock" in records[0].getMessage()


def test_a_listener_that_raises_is_logged_and_never_reaches_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(observation: Observation) -> None:
        raise RuntimeError("listener bug")

    lock = polysync.get_context("thread").Lock()
    try:
        with (
            caplog.at_level(logging.ERROR, logger="polysync.instrument"),
            instrument.listening(broken),
        ):
            assert lock.acquire()
            lock.release()
    finally:
        lock.close()
    failures = [r for r in caplog.records if r.name == "polysync.instrument"]
    assert len(failures) == 2
    assert failures[0].exc_info is not None
    assert "listener bug" in str(failures[0].exc_info[1])


def test_subscribe_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        instrument.subscribe(42)  # type: ignore[arg-type]
    assert not instrument.active


# -- redis: a real listener, a lost lease and a reconnect, on a private server ---------------


@pytest.fixture
def redis_ctx(redis_server_fresh: RedisServer) -> Iterator[polysync.Context]:
    pytest.importorskip("redis")
    ctx = polysync.get_context(
        "redis", url=redis_server_fresh.url, prefix="ins" + uuid.uuid4().hex[:8]
    )
    yield ctx
    ctx.backend.close()


@pytest.mark.parametrize("backend", ["posix", "thread", "redis"])
@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore"])
def test_an_async_acquire_reports_once_whatever_its_slices(
    recorder: Recorder, backend: str, kind: str, request: pytest.FixtureRequest
) -> None:
    # polysync.aio waits in many kernel calls (50 ms slices, or natively on redis): a
    # listener must see one wait, one timeout, one hold, as for a sync handle.
    import asyncio

    import polysync.aio

    if backend == "posix" and not any(
        n == "posix" and ok for n, ok, _ in polysync.available_backends()
    ):
        pytest.skip("the posix backend does not run here")
    ctx = (
        request.getfixturevalue("redis_ctx")
        if backend == "redis"
        else polysync.get_context(backend)
    )
    actx = polysync.aio.AsyncContext(ctx)
    handle = getattr(actx, kind)(name=None) if kind != "Semaphore" else actx.Semaphore(1)

    async def main() -> None:
        assert await handle.acquire()
        if kind == "RLock":
            assert await handle.acquire()  # again: a second acquire, the same hold
            await handle.release()
        other = asyncio.create_task(_other_task_tries(handle))
        assert await other is False
        await handle.release()

    asyncio.run(asyncio.wait_for(main(), 30))
    mine = recorder.of(None)
    events = [o.event for o in mine]
    expected = (
        ["acquired", "acquired", "timeout", "released"]
        if kind == "RLock"
        else ["acquired", "timeout", "released"]
    )
    assert events == expected, mine
    timeout = next(o for o in mine if o.event == "timeout")
    assert timeout.seconds is not None
    assert timeout.seconds >= 0.2  # the whole wait
    released = mine[-1]
    assert released.seconds is not None
    assert released.seconds >= 0.2  # held throughout
    assert all(o.backend == backend for o in mine)


@pytest.mark.parametrize("backend", ["posix", "thread"])
@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "BoundedSemaphore"])
def test_uncontended_async_pairs_report_once_each(
    recorder: Recorder, backend: str, kind: str
) -> None:
    # The uncontended path (bare calls and async with) skips the sync handle's frames:
    # still one acquired and one released per pair, and nothing once nobody listens.
    import asyncio

    import polysync.aio

    if backend == "posix" and not any(
        n == "posix" and ok for n, ok, _ in polysync.available_backends()
    ):
        pytest.skip("the posix backend does not run here")
    handle = getattr(polysync.aio.get_context(backend), kind)()

    async def pairs() -> None:
        assert await handle.acquire()
        await handle.release()
        async with handle:
            pass

    asyncio.run(pairs())
    assert [o.event for o in recorder.of(None)] == ["acquired", "released"] * 2
    instrument.unsubscribe(recorder)
    try:
        asyncio.run(pairs())
        assert len(recorder.of(None)) == 4
    finally:
        instrument.subscribe(recorder)  # the fixture unsubscribes it


async def _other_task_tries(handle: object) -> bool:
    got: bool = await handle.acquire(timeout=0.25)  # type: ignore[attr-defined]
    return got


def test_a_listener_sees_a_redis_lease_lost_in_a_server_freeze_and_it_is_logged(
    recorder: Recorder,
    redis_ctx: polysync.Context,
    redis_server_fresh: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    told = threading.Event()
    lock = redis_ctx.Lock(name="leased", lease=1.0, on_lost=told.set)
    try:
        with caplog.at_level(logging.WARNING, logger="polysync"):
            assert lock.acquire(timeout=5)
            redis_server_fresh.pause(2.5, block=True)  # no renewal gets through: lost
            assert recorder.wait_for("lease_lost", 10)
            assert told.wait(5)  # the user's own on_lost still runs
            assert lock.lost
            with pytest.raises(polysync.LeaseLostError):
                lock.release()  # the server answers again: the release finds it gone
    finally:
        lock.close()
    events = [(o.event, o.kind, o.backend) for o in recorder.of("leased")]
    assert events[:2] == [("acquired", "lock", "redis"), ("lease_lost", "lock", "redis")]
    lost = [r for r in caplog.records if r.getMessage().startswith("lease lost:")]
    assert lost
    assert lost[0].name == "polysync.backends.redis.kernels"
    assert lost[0].levelno == logging.WARNING
    assert "{n:leased}" in lost[0].getMessage()


def test_a_reconnect_after_a_redis_restart_is_logged(
    redis_ctx: polysync.Context,
    redis_server_fresh: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock = redis_ctx.Lock(name="r")
    try:
        assert lock.acquire(timeout=5)
        lock.release()
        redis_server_fresh.restart()
        with caplog.at_level(logging.INFO, logger="polysync.backends.redis"):
            assert lock.acquire(timeout=5)  # the idle connection was closed: a new one
            lock.release()
    finally:
        lock.close()
        redis_ctx.unlink("r")
    messages = [r.getMessage() for r in caplog.records if r.name == "polysync.backends.redis.lanes"]
    assert any("reconnected to redis" in m and "restart" in m for m in messages), messages


def test_no_log_records_on_the_uncontended_path(caplog: pytest.LogCaptureFixture) -> None:
    ctx = polysync.get_context("thread")
    lock, sem = ctx.Lock(), ctx.Semaphore(2)
    try:
        with caplog.at_level(logging.DEBUG, logger="polysync"):
            for _ in range(100):
                with lock, sem:
                    pass
    finally:
        lock.close()
        sem.close()
    assert [r for r in caplog.records if r.name.startswith("polysync")] == []


# -- the OpenTelemetry adapter, read back through the SDK's in-memory reader ------------------


def test_the_otel_adapter_records_waits_holds_and_timeouts() -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import polysync.otel

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    ctx = polysync.get_context("thread")
    lock, other = ctx.Lock(name="otel-lock"), ctx.Lock(name="otel-lock")
    listener = polysync.otel.instrument_meter(provider)
    try:
        with lock:
            time.sleep(0.02)
        assert other.acquire()
        assert lock.acquire(timeout=0.01) is False
        other.release()
    finally:
        instrument.unsubscribe(listener)
        lock.close()
        other.close()
        ctx.unlink("otel-lock")
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    attributes = {
        "polysync.kind": "lock",
        "polysync.backend": "thread",
        "polysync.name": "otel-lock",
    }
    (wait,) = points["polysync.acquire.wait"]
    assert (wait.count, dict(wait.attributes)) == (2, attributes)
    (hold,) = points["polysync.hold"]
    assert hold.count == 2
    assert hold.max >= 0.015
    (timeouts,) = points["polysync.acquire.timeouts"]
    assert timeouts.value == 1
    assert "polysync.takeovers" not in points  # nothing was taken over
    provider.shutdown()
