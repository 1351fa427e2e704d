"""The windows backend, for real: the shipped conformance suite plus kernel32-specific checks.

Runs only on Windows (in CI: under Wine, see .ci/windows-tests.sh); on other platforms
the whole module skips. Timing checks assert lower bounds only: Wine times waits to about
1 ms, real Windows to its 15.6 ms tick.
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

import polysync
from polysync import Capability
from polysync.kernel import Kind, ObjectName, Scope
from polysync.testing import BackendSuite

pytestmark = pytest.mark.skipif(
    sys.platform != "win32", reason="the windows backend runs on Windows only (CI: under Wine)"
)

PROMPT = 10.0
#: How long an acquirer may take over from a dead holder (it takes well under 1 s).
RECOVERY = 5.0


def _run(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh, unrelated Windows process (not a pickled primitive in sight)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def ctx() -> polysync.Context:
    return polysync.get_context("windows")


@pytest.fixture
def name(ctx: polysync.Context) -> Iterator[str]:
    value = f"pswin-{uuid.uuid4().hex[:12]}"
    yield value
    for used in (value, f"{value}.lock", f"{value}-ev"):
        ctx.unlink(used)


class TestWindows(BackendSuite):
    @pytest.fixture
    def context(self) -> polysync.Context:
        return polysync.get_context("windows")


# -- the backend and its options ----------------------------------------------------------


def test_default_backend_on_windows() -> None:
    assert polysync.get_context().name == "windows"


def test_capabilities(ctx: polysync.Context) -> None:
    assert ctx.capabilities >= {
        Capability.CROSS_PROCESS,
        Capability.NAMED,
        Capability.SHARED_CELLS,
        Capability.OWNER_DEATH,
        Capability.READABLE_VALUE,
        Capability.FENCING,
    }
    assert Capability.CROSS_HOST not in ctx.capabilities


def test_global_namespace_is_accepted(name: str) -> None:
    glob = polysync.get_context("windows", namespace="Global")
    local = polysync.get_context("windows", namespace="Local")
    assert "Global\\" in repr(glob)
    lock = glob.Lock(name=name)
    assert lock.acquire(timeout=1.0)
    assert glob.Lock(name=name).acquire(False) is False  # same object by name
    assert local.Lock(name=name).acquire(False) is True  # another namespace, another object
    lock.release()
    event = glob.Event(name=name + "-ev")
    event.set()
    assert glob.Event(name=name + "-ev").wait(0)
    glob.unlink(name)
    glob.unlink(name + "-ev")


@pytest.mark.parametrize(
    ("value", "error"),
    [(5, TypeError), (b"Local", TypeError), ("local", ValueError), ("Session", ValueError)],
)
def test_bad_namespace_is_named(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="namespace") as info:
        polysync.get_context("windows", namespace=value)
    assert repr(value) in str(info.value)


def test_unknown_option() -> None:
    with pytest.raises(TypeError, match="namespace"):
        polysync.get_context("windows", mode=0o600)


# -- names --------------------------------------------------------------------------------


def test_names_map_injectively_within_max_path() -> None:
    from polysync.backends.windows import MAX_PATH, windows_name

    users = [
        "jobs",
        "Jobs",
        "a-b",
        "a_b",
        "a.b",
        "a b",
        "a/b",
        "a\\b",
        "a:b",
        "a~1",
        "jobs.c",
        "jobs.s0",
        "\u00e9",
        "e\u0301",
        "x" * 200,
        "x" * 201,
        "x" * 255,
        "h-" + "0" * 64,
    ]
    object_names = [ObjectName(Scope.NAMED, u, p) for u in users for p in ("", "c", "s0", "k")]
    object_names += [
        ObjectName(Scope.ANONYMOUS, "1:ab", "c"),
        ObjectName(Scope.ANONYMOUS, "1:ab", "k"),
        ObjectName(Scope.ANONYMOUS, "1-ab", "c"),
        ObjectName(Scope.WAITER, "1:2:3"),
        ObjectName(Scope.WAITER, "1-2:3"),
        ObjectName(Scope.WAITER, "1:2-3"),
    ]
    # A primitive's own name is never stored, only its parts: ("jobs", part "c") and
    # ("jobs.c", no part) may share a kernel name, as their flat forms are equal.
    distinct = {str(n): n for n in object_names}
    mapped = {windows_name(n) for n in distinct.values()}
    assert len(mapped) == len(distinct)
    for full in mapped:
        assert full.startswith("Local\\polysync-")
        assert "~" not in full  # generations are appended after a "~"
        assert len(full) + len("polysync-d-~") + 20 <= MAX_PATH
    assert windows_name(ObjectName(Scope.NAMED, "jobs")) == "Local\\polysync-n-jobs"
    assert windows_name(ObjectName(Scope.NAMED, "a b")).startswith("Local\\polysync-h-")
    assert windows_name(ObjectName(Scope.NAMED, "jobs"), "Global") == "Global\\polysync-n-jobs"


def test_names_are_case_sensitive(ctx: polysync.Context, name: str) -> None:
    upper, lower = ctx.Lock(name=name.upper()), ctx.Lock(name=name)
    assert upper.acquire(False)
    assert lower.acquire(False)
    ctx.unlink(name.upper())


# -- lifetime -----------------------------------------------------------------------------


def test_anonymous_object_vanishes_with_its_last_handle(
    ctx: polysync.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polysync.backends.windows import WindowsBackend, _exists

    backend = ctx.backend
    assert isinstance(backend, WindowsBackend)
    lock = ctx.Lock()
    kernel_name = backend.windows_name(lock._object_name.child("k"))
    assert _exists(kernel_name)
    lock.close()
    assert not _exists(kernel_name)
    # Without the transfer hold, a pickle outliving every handle reopens nothing.
    monkeypatch.setattr(WindowsBackend, "hold_for_transfer", lambda self, name: None)
    event = ctx.Event()
    data = pickle.dumps(event)
    event.close()
    with pytest.raises(polysync.NotFoundError) as info:
        pickle.loads(data)
    assert isinstance(info.value, FileNotFoundError)


def test_pickled_anonymous_object_outlives_its_sender(ctx: polysync.Context) -> None:
    event = ctx.Event()
    data = pickle.dumps(event)
    event.set()
    event.close()  # the sender's last handle: only the transfer hold keeps it now
    twin = pickle.loads(data)
    assert twin.is_set()


def test_named_object_lives_until_unlinked(ctx: polysync.Context, name: str) -> None:
    sem = ctx.Semaphore(3, name=name)
    sem.close()  # no handle of ours left open: the backend keeps it
    assert ctx.Semaphore(0, name=name).get_value() == 3
    old = ctx.Semaphore(0, name=name)
    assert ctx.unlink(name) is True
    assert old.acquire(False)  # an open handle keeps working on the old object
    assert ctx.Semaphore(5, name=name).get_value() == 5  # the name opens a fresh one
    assert ctx.unlink(name) is True
    assert ctx.unlink(name) is False


# -- separate Windows processes -----------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_rlock_of_a_dead_owner_reports_wait_abandoned(
    ctx: polysync.Context, name: str, how: str
) -> None:
    child = _start(
        f"""
        import sys, time, polysync
        rlock = polysync.get_context("windows").RLock(name={name!r})
        rlock.acquire(); rlock.acquire()
        print("held", flush=True)
        if {how == "is killed"!r}:
            time.sleep(60)
        """
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        rlock = ctx.RLock(name=name)
        assert rlock.locked()
        if how == "is killed":
            assert rlock.acquire(timeout=0.2) is False  # alive: never taken over
            child.kill()
        with pytest.warns(polysync.OwnerDiedWarning, match="died holding this lock"):
            assert rlock.acquire(timeout=PROMPT) is True
        assert rlock.owner_died
        assert rlock._is_owned()
        assert rlock._recursion_count() == 1
        rlock.release()
        assert not rlock.owner_died
        assert not rlock.locked()
        assert rlock.acquire(False)  # no second warning: the abandonment was consumed
        rlock.release()
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


_HOLD_LOCK = """
import sys, time, polysync
lock = polysync.get_context("windows").Lock(name={name!r})
assert lock.acquire(timeout=10)
print("held", lock.fencing_token, flush=True)
if {kill!r}:
    time.sleep(60)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["is killed", "exits"])
def test_lock_of_a_dead_holder_is_recovered(ctx: polysync.Context, name: str, how: str) -> None:
    lock = ctx.Lock(name=name)
    child = _start(_HOLD_LOCK.format(name=name, kill=how == "is killed"))
    try:
        assert child.stdout is not None
        said, token = child.stdout.readline().split()
        assert said == "held"
        assert lock.locked()
        if how == "is killed":
            assert lock.acquire(timeout=0.3) is False  # alive: never taken over
            assert lock.acquire(False) is False
            child.kill()  # TerminateProcess
        with pytest.warns(polysync.OwnerDiedWarning, match="died holding this lock"):
            assert lock.acquire(timeout=RECOVERY) is True
        assert lock.owner_died
        assert lock.fencing_token is not None
        assert lock.fencing_token > int(token)
        holder = lock.statistics().holder
        assert holder is not None
        assert holder.pid == os.getpid()
        lock.release()
        assert not lock.owner_died
        assert not lock.locked()
        assert lock.acquire(False)  # no second warning: the takeover was consumed
        lock.release()
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


@pytest.mark.timeout(120)
def test_a_waiter_blocked_on_a_killed_holder_takes_over(ctx: polysync.Context, name: str) -> None:
    lock = ctx.Lock(name=name)
    child = _start(_HOLD_LOCK.format(name=name, kill=True))
    out: list[object] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("held")

        def waiter() -> None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out.append(lock.acquire(timeout=RECOVERY))
            out.append(any(w.category is polysync.OwnerDiedWarning for w in caught))

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        time.sleep(0.2)  # blocked, slice after slice, on a live holder
        assert out == []
        child.kill()
        thread.join(RECOVERY + PROMPT)
        assert out == [True, True]
        assert lock.owner_died
        lock.release()
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


_LOOP = """
import threading, time, polysync
ctx = polysync.get_context("windows")
lock, sem = ctx.Lock(name={name!r}), ctx.BoundedSemaphore(2, name={name!r} + "-sem")

def loop(obj):
    while True:
        if obj.acquire(timeout=10):
            obj.release()

def two_then_two():
    while True:
        if sem.acquire(timeout=10):
            if sem.acquire(timeout=10):
                sem.release()
            sem.release()

for target, args in ((loop, (lock,)), (loop, (lock,)), (loop, (sem,)), (two_then_two, ())):
    threading.Thread(target=target, args=args, daemon=True).start()
print("looping", flush=True)
time.sleep(60)
"""


@pytest.mark.timeout(180)
def test_killed_at_random_moments_nothing_is_wedged_or_lost(
    ctx: polysync.Context, name: str
) -> None:
    """A process killed anywhere in acquire() or release() of a Lock or a semaphore:
    the lock is taken over, and both permits of a BoundedSemaphore(2) come back, exactly."""
    rng = random.Random(8)
    lock = ctx.Lock(name=name)
    sem = ctx.BoundedSemaphore(2, name=name + "-sem")
    for trial in range(5):
        child = _start(_LOOP.format(name=name))
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "looping"
            time.sleep(rng.uniform(0.01, 0.2))
            child.kill()
            child.wait(PROMPT)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
                assert lock.acquire(timeout=RECOVERY), f"wedged after kill {trial}"
                assert sem.acquire(timeout=RECOVERY), f"a permit lost after kill {trial}"
                first = sem.fencing_token
                assert sem.acquire(timeout=RECOVERY), f"a permit lost after kill {trial}"
            before = lock.fencing_token
            lock.release()
            assert lock.acquire(timeout=RECOVERY)
            assert lock.fencing_token is not None
            assert before is not None
            assert lock.fencing_token > before
            lock.release()
            assert not lock.locked()
            # Exactly two: none made up, and the bound still holds.
            assert first is not None
            assert sem.fencing_token is not None
            assert sem.fencing_token > first
            assert sem.acquire(False) is False
            assert sem.get_value() == 0
            sem.release()
            sem.release()
            with pytest.raises(polysync.NotHeldError):
                sem.release()
            assert sem.get_value() == 2
        finally:
            child.kill()
            child.communicate(timeout=PROMPT)
    ctx.unlink(name + "-sem")


_TAKE_PERMITS = """
import time, polysync
sem = polysync.get_context("windows").{kind}({value}, name={name!r})
for _ in range({take}):
    assert sem.acquire(timeout=10)
if {close!r}:
    sem.close()  # a normal close: what it took was consumed
print("took", sem.fencing_token if not {close!r} else 0, flush=True)
time.sleep(60)
"""


def _owner_died_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if w.category is polysync.OwnerDiedWarning]


@pytest.mark.timeout(120)
def test_permits_of_a_killed_process_come_back(ctx: polysync.Context, name: str) -> None:
    sem = ctx.Semaphore(3, name=name)
    child = _start(_TAKE_PERMITS.format(kind="Semaphore", value=3, name=name, take=2, close=False))
    try:
        assert child.stdout is not None
        said, token = child.stdout.readline().split()
        assert said == "took"
        child.kill()  # TerminateProcess
        child.wait(PROMPT)
        assert sem.get_value() == 1  # not given back until an acquire finds none left
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert sem.acquire(False) is True  # the one left: nothing to tell
        assert _owner_died_warnings(caught) == []
        assert not sem.owner_died
        with pytest.warns(polysync.OwnerDiedWarning, match=r"died holding 2 permit"):
            assert sem.acquire(timeout=RECOVERY) is True
        assert sem.owner_died
        assert sem.fencing_token is not None
        assert sem.fencing_token > int(token)
        assert sem.get_value() == 1  # 2 came back, this handle took one
        assert sem.statistics().value == 1
        sem.release()
        assert not sem.owner_died
        sem.release()
        assert sem.get_value() == 3  # exact: none lost, none made up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert sem.acquire(False)
            assert sem.acquire(False) is False
        assert _owner_died_warnings(caught) == []  # told once
        sem.release(3)
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


@pytest.mark.timeout(120)
def test_a_waiter_blocked_on_a_killed_permit_holder_gets_it(
    ctx: polysync.Context, name: str
) -> None:
    sem = ctx.BoundedSemaphore(1, name=name)
    child = _start(
        _TAKE_PERMITS.format(kind="BoundedSemaphore", value=1, name=name, take=1, close=False)
    )
    out: list[object] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("took")

        def waiter() -> None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out.append(sem.acquire(timeout=RECOVERY))
            out.append(_owner_died_warnings(caught))

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        time.sleep(0.3)  # blocked, slice after slice, on a live holder
        assert out == []
        assert sem.statistics().waiting == 1
        child.kill()
        thread.join(RECOVERY + PROMPT)
        assert out[0] is True
        assert isinstance(out[1], list)
        assert len(out[1]) == 1
        assert "died holding 1 permit" in out[1][0]
        assert sem.owner_died
        assert sem.get_value() == 0
        sem.release()
        with pytest.raises(polysync.NotHeldError):
            sem.release()
        assert sem.get_value() == 1
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


@pytest.mark.timeout(120)
def test_a_handle_closed_normally_keeps_what_it_took(ctx: polysync.Context, name: str) -> None:
    sem = ctx.Semaphore(3, name=name)
    child = _start(_TAKE_PERMITS.format(kind="Semaphore", value=3, name=name, take=2, close=True))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("took")
        child.kill()
        child.wait(PROMPT)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert sem.acquire(timeout=PROMPT)
            assert sem.acquire(timeout=0.3) is False  # consumed: nothing comes back
        assert _owner_died_warnings(caught) == []
        assert sem.get_value() == 0
        sem.release()
        assert sem.get_value() == 1
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


def test_a_semaphore_of_the_previous_layout_is_refused(ctx: polysync.Context, name: str) -> None:
    from polysync.backends.windows import WindowsBackend

    backend = ctx.backend
    assert isinstance(backend, WindowsBackend)
    # The block a polysync before the counted semaphores made (native layout 1).
    old = backend._header(
        ObjectName(Scope.NAMED, name), Kind.SEMAPHORE, 2, 1, create=True, match=False, layout=1
    )
    try:
        with pytest.raises(polysync.KindMismatchError, match="layout"):
            ctx.Semaphore(2, name=name)
    finally:
        old.close()


# -- issue 8: a process that dies inside a Barrier or a Condition wait ------------------------

_BARRIER_LOOP = """
import threading, time, warnings, polysync
warnings.simplefilter("ignore")
barrier = polysync.get_context("windows").Barrier(1, name={name!r})

def loop():
    while True:
        try:
            barrier.wait(timeout=10)
            barrier.reset()
        except polysync.BrokenBarrierError:
            barrier.reset()

for _ in range(3):
    threading.Thread(target=loop, daemon=True).start()
print("looping", flush=True)
time.sleep(60)
"""


def _within(seconds: float, fn: Callable[[], object]) -> list[object]:
    """Run *fn* in a daemon thread; its result or exception, ``[]`` if it did not end."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return out


@pytest.mark.timeout(180)
def test_a_barrier_survives_a_death_inside_its_internal_mutex(
    ctx: polysync.Context, name: str
) -> None:
    """A process killed at random moments of Barrier(1).wait()/reset() loops, often while
    holding the Barrier's internal mutex: the barrier is never wedged. The next call
    takes the abandoned mutex, breaks the barrier (OwnerDiedWarning) and reset() mends
    it. With the floor's semaphore as its mutex, the first such kill wedged it for all."""
    rng = random.Random(11)
    barrier = ctx.Barrier(1, name=name)
    told = 0
    for trial in range(6):
        child = _start(_BARRIER_LOOP.format(name=name))
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "looping"
            time.sleep(rng.uniform(0.05, 0.3))
            child.kill()
            child.wait(PROMPT)

            def pass_once() -> int:
                try:
                    return barrier.wait(timeout=5)
                except polysync.BrokenBarrierError:  # it died inside the barrier: reported
                    barrier.reset()
                    return barrier.wait(timeout=5)

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = _within(RECOVERY + PROMPT, pass_once)
            assert out == [0], f"wedged after kill {trial}: {out}"
            died = _owner_died_warnings(caught)
            assert all("WAIT_ABANDONED" in m and "Barrier" in m for m in died)
            told += bool(died)
            assert not barrier.broken
        finally:
            child.kill()
            child.communicate(timeout=PROMPT)
    assert told > 0  # some kills landed inside the mutex (else the test proves nothing)


def test_a_barrier_of_the_floors_layout_is_refused(ctx: polysync.Context, name: str) -> None:
    from polysync import derived

    # The Barrier a polysync before the kernel mutex made: the floor's, a semaphore mutex.
    old = derived.openers.open_barrier(ctx.backend, ObjectName(Scope.NAMED, name), 2, create=True)
    try:
        with pytest.raises(polysync.KindMismatchError, match="layout"):
            ctx.Barrier(2, name=name)
    finally:
        old.close()


_WAIT_TWICE = """
import polysync
ctx = polysync.get_context("windows")
cond = ctx.Condition(name={name!r})
with cond:
    print("waiting", flush=True)
    if cond.wait(60):
        print("waiting again", flush=True)
        cond.wait(60)
"""


@pytest.mark.timeout(120)
def test_a_notify_reaches_a_live_waiter_behind_one_killed_in_wait(
    ctx: polysync.Context, name: str
) -> None:
    """A waiter killed inside Condition.wait() must not swallow notify(1): the live waiter
    queued behind it is woken. Before, liveness said "alive" for every process on
    Windows, and the notification went to the dead waiter's semaphore (which the
    notifier's cached handle kept in being)."""
    cond = ctx.Condition(name=name)
    victim = _start(_WAIT_TWICE.format(name=name))
    live: list[bool] = []
    waiter = None
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "waiting"
        with cond:  # taken once the victim waits: it is queued
            cond.notify()  # the notifier now knows the victim's waiter (caches its handle)
        assert victim.stdout.readline().strip() == "waiting again"
        with cond:
            victim.kill()  # killed while queued in wait()
            victim.wait(PROMPT)
        inside = threading.Event()

        def wait_live() -> None:
            with cond:
                inside.set()
                live.append(cond.wait(20))

        waiter = threading.Thread(target=wait_live, daemon=True)
        waiter.start()
        assert inside.wait(PROMPT)
        with cond:  # taken once the live waiter waits: it is queued behind the dead one
            began = time.monotonic()
            cond.notify(1)
        waiter.join(25)
        took = time.monotonic() - began
        assert live == [True], "notify(1) went to the dead waiter; the live one timed out"
        assert took < 2.0, f"woken only after {took:.2f} s"
        assert cond.statistics().waiting == 0
    finally:
        victim.kill()
        victim.communicate(timeout=PROMPT)
        if waiter is not None:
            with cond:
                cond.notify_all()
            waiter.join(25)
        cond.close()


_WAIT_AT = """
import polysync
barrier = polysync.get_context("windows").Barrier(3, name={name!r})
print("arriving", flush=True)
barrier.wait(60)
"""


@pytest.mark.timeout(120)
def test_a_barrier_party_killed_while_waiting_no_longer_counts(
    ctx: polysync.Context, name: str
) -> None:
    """Parties 3: A waits, B waits and is killed, C arrives: C must not pass (with A and
    the dead B); D arrives: A, C and D pass, with the indices 0, 1 and 2, and the arrival
    that dropped B was told (OwnerDiedWarning). Before, B counted (liveness said "alive"
    for every process on Windows) and A and C passed with it."""
    barrier = ctx.Barrier(3, name=name)
    out: list[object] = []

    def party() -> None:
        try:
            out.append(barrier.wait(20))
        except polysync.BrokenBarrierError:
            out.append("broken")

    def until(check: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    threads = [threading.Thread(target=party, daemon=True) for _ in range(2)]
    threads[0].start()  # A
    assert until(lambda: barrier.n_waiting == 1, PROMPT)
    victim = _start(_WAIT_AT.format(name=name))  # B
    try:
        assert until(lambda: barrier.n_waiting == 2, 30)
        # n_waiting counts B as it registers, inside the barrier's kernel mutex; a kill
        # there abandons the mutex and breaks the barrier (tested on its own): let B
        # leave the mutex for its wait first.
        time.sleep(0.3)
        victim.kill()
        victim.wait(PROMPT)
        assert barrier.n_waiting == 1  # the dead party is not waiting
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads[1].start()  # C
            time.sleep(1.0)
            assert out == [], "C passed the barrier with A and the dead B"
            party()  # D
            for t in threads:
                t.join(25)
        assert sorted(out, key=str) == [0, 1, 2]
        assert any("died waiting at this barrier" in m for m in _owner_died_warnings(caught))
        assert not barrier.broken
        assert barrier.n_waiting == 0
    finally:
        victim.kill()
        victim.communicate(timeout=PROMPT)
        barrier.abort()
        for t in threads:
            if t.ident is not None:
                t.join(25)
        barrier.close()


def test_liveness_of_windows_processes() -> None:
    """derived.liveness asks the kernel (a process handle), never os.kill(pid, 0), and
    packs the creation time into identities and parked waiters' nonces."""
    from polysync.derived import liveness

    assert liveness.started() > 0  # the creation time, folded into 38 bits
    assert liveness.started() < 1 << 38
    assert liveness.is_running(os.getpid(), liveness.started())
    child = _start("import time; print('up', flush=True); time.sleep(60)")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        start = liveness._start_time(child.pid)
        assert start
        assert liveness.is_running(child.pid, start)
        assert liveness.is_running(child.pid, 0)
        assert not liveness.is_running(child.pid, start + 1)  # another creation: reused
        assert liveness.is_alive(child.pid | (start << 23))
        child.kill()
        child.wait(PROMPT)  # Popen keeps a handle: the exited process keeps its id
        assert not liveness.is_running(child.pid, start)
        assert not liveness.is_running(child.pid, 0)
        assert not liveness.is_alive(child.pid | (start << 23))
    finally:
        child.kill()
        child.communicate(timeout=PROMPT)


@pytest.mark.timeout(120)
def test_any_process_may_release_a_lock(ctx: polysync.Context, name: str) -> None:
    lock = ctx.Lock(name=name)
    assert lock.acquire()
    out = _run(
        f"""
        import polysync
        lock = polysync.get_context("windows").Lock(name={name!r})
        print(lock.locked())
        lock.release()
        print(lock.locked())
        try:
            lock.release()
        except polysync.NotHeldError:
            print("unheld")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "unheld"]
    assert not lock.locked()
    assert lock.acquire(False)
    lock.release()


@pytest.mark.timeout(120)
def test_fencing_tokens_increase_across_processes(ctx: polysync.Context, name: str) -> None:
    kinds = ("Lock", "RLock", "Semaphore", "BoundedSemaphore")
    objs = [getattr(ctx, kind)(name=f"{name}-{kind}") for kind in kinds]
    mine = []
    for obj in objs:
        assert obj.acquire(timeout=PROMPT)
        mine.append(obj.fencing_token)
        obj.release()
    out = _run(
        f"""
        import polysync
        ctx = polysync.get_context("windows")
        for kind in {kinds!r}:
            obj = getattr(ctx, kind)(name={name!r} + "-" + kind)
            tokens = []
            for _ in range(3):
                assert obj.acquire(timeout=10)
                tokens.append(obj.fencing_token)
                obj.release()
            print(*tokens)
        """
    )
    assert out.returncode == 0, out.stderr
    theirs = [[int(t) for t in line.split()] for line in out.stdout.splitlines()]
    for obj, first, middle in zip(objs, mine, theirs, strict=True):
        assert obj.acquire(timeout=PROMPT)
        tokens = [first, *middle, obj.fencing_token]
        obj.release()
        assert tokens == sorted(set(tokens)), tokens
    for kind in kinds:
        ctx.unlink(f"{name}-{kind}")


@pytest.mark.timeout(120)
def test_semaphore_and_event_shared_by_name(ctx: polysync.Context, name: str) -> None:
    sem = ctx.Semaphore(0, name=name)
    event = ctx.Event(name=name + "-ev")
    child = _start(
        f"""
        import polysync
        ctx = polysync.get_context("windows")
        sem = ctx.Semaphore(99, name={name!r})
        event = ctx.Event(name={name + "-ev"!r})
        print(sem.get_value(), flush=True)
        sem.release(2)
        print(event.wait({PROMPT}), flush=True)
        """
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "0"  # the first value won
        assert sem.acquire(timeout=PROMPT)
        assert sem.acquire(timeout=PROMPT)
        assert sem.get_value() == 0
        event.set()
        out, err = child.communicate(timeout=PROMPT * 3)
        assert out.strip() == "True", err
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=PROMPT)


@pytest.mark.timeout(120)
def test_timeout_observed_by_another_process(ctx: polysync.Context, name: str) -> None:
    lock = ctx.Lock(name=name)
    assert lock.acquire()
    out = _run(
        f"""
        import time, polysync
        lock = polysync.get_context("windows").Lock(name={name!r})
        start = time.monotonic()
        got = lock.acquire(timeout=0.3)
        print(got, time.monotonic() - start)
        """
    )
    assert out.returncode == 0, out.stderr
    got, waited = out.stdout.split()
    assert got == "False"
    assert float(waited) >= 0.25  # a lower bound only: timer ticks differ
    lock.release()


@pytest.mark.timeout(120)
def test_ctrl_c_interrupts_blocking_waits_and_changes_nothing() -> None:
    # In a fresh process: a KeyboardInterrupt must not reach this pytest run.
    out = _run(
        """
        import _thread, threading, time, polysync
        ctx = polysync.get_context("windows")

        def interrupted(fn):
            threading.Timer(0.3, _thread.interrupt_main).start()
            start = time.monotonic()
            try:
                fn()
            except KeyboardInterrupt:
                return time.monotonic() - start
            return 999.0

        lock = ctx.Lock(); lock.acquire()
        sem = ctx.Semaphore(0)
        event = ctx.Event()
        rlock, hold, go = ctx.RLock(), ctx.Event(), ctx.Event()

        def holder():
            with rlock:
                hold.set()
                go.wait(30)

        barrier, held, free = ctx.Barrier(2), ctx.Event(), ctx.Event()

        def mutex_holder():  # holds the Barrier's internal (kernel) mutex
            with barrier._kernel._mutex:
                held.set()
                free.wait(30)

        t = threading.Thread(target=holder); t.start(); hold.wait(10)
        waits = [
            interrupted(lock.acquire),
            interrupted(lambda: lock.acquire(timeout=20)),
            interrupted(sem.acquire),
            interrupted(lambda: sem.acquire(timeout=20)),
            interrupted(event.wait),
            interrupted(rlock.acquire),
            interrupted(barrier.wait),  # parked: leaves, the barrier not broken
        ]
        m = threading.Thread(target=mutex_holder); m.start(); held.wait(10)
        waits.append(interrupted(barrier.wait))  # blocked on the internal mutex
        free.set(); m.join(10)
        go.set(); t.join(10)
        passed = []
        other = threading.Thread(target=lambda: passed.append(barrier.wait(10)))
        other.start()
        mine = barrier.wait(10)
        other.join(10)
        checks = [
            not lock.acquire(False),
            sem.get_value() == 0,
            not event.is_set(),
            rlock.acquire(False) and not rlock.owner_died,
            sorted([mine, *passed]) == [0, 1] and not barrier.broken,
        ]
        print(max(waits), all(checks))
        """
    )
    assert out.returncode == 0, out.stderr
    longest, consistent = out.stdout.split()
    assert float(longest) < 3.0  # interrupted promptly (0.3 s timer, 50 ms slices)
    assert consistent == "True"


@pytest.mark.timeout(300)
def test_demo_runs_on_windows() -> None:
    """The main job (README command 1) on this backend, with real spawned processes."""
    out = subprocess.run(
        [sys.executable, "-m", "polysync", "demo", "--backend", "windows", "--workers", "3"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS 6/6" in out.stdout, out.stdout
