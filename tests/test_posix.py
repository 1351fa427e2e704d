"""The posix backend's own promises: names, permissions, cleanup, unrelated processes."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

import polysync
from polysync.backends.posix import posix_name
from polysync.kernel import ObjectName, Scope

from .conftest import (
    SHM,
    collected_while_holding,
    polysync_shm_entries,
    run_python,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def ctx() -> polysync.Context:
    return polysync.get_context("posix")


@pytest.fixture
def name(ctx: polysync.Context) -> Iterator[str]:
    value = f"pstest-{uuid.uuid4().hex[:10]}"
    yield value
    ctx.unlink(value)
    ctx.unlink(f"{value}.lock")


def _named(user: str, part: str = "") -> ObjectName:
    return ObjectName(Scope.NAMED, user, part)


def test_readable_names() -> None:
    assert posix_name(_named("jobs", "s0")) == "/polysync-n-jobs.s0"
    assert posix_name(ObjectName(Scope.ANONYMOUS, "t1:ab", "c")) == "/polysync-a-t1-ab.c"


@pytest.mark.parametrize("user", ["a/b", "a b", "é", "x" * 250, "jobs\n"])
def test_other_names_are_hashed_within_limits(user: str) -> None:
    mapped = posix_name(_named(user, "s0"))
    assert mapped.startswith("/polysync-h-")
    assert len(mapped) <= 240
    assert "/" not in mapped[1:]


def test_mapping_is_injective_on_tricky_pairs() -> None:
    pairs = [("a/b", "a_b"), ("ab", "a" + "b"), ("x" * 250, "x" * 251), ("jobs", "h-jobs")]
    for left, right in pairs:
        if left != right:
            assert posix_name(_named(left, "c")) != posix_name(_named(right, "c"))
    assert posix_name(_named("h-abc", "c")) != posix_name(_named("abc", "c"))


def test_objects_are_private_to_the_user(ctx: polysync.Context, name: str) -> None:
    ctx.Event(name=name)
    ctx.Condition(name=f"{name}.lock")  # its lock's cells, and a waiter semaphore below
    assert ctx.Event(name=name).wait(0.001) is False
    base = posix_name(_named(name))
    files = [f"{SHM}{base}.c", f"{SHM}{posix_name(_named(name + '.lock'))}.c"]
    files += [f"{SHM}/{entry}" for entry in os.listdir(SHM) if entry.startswith("sem.polysync-w-")]
    try:
        for path in files:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    finally:
        ctx.unlink(f"{name}.lock.lock")  # the Condition's own lock (the fixture has the rest)


def test_named_object_persists_until_unlinked(ctx: polysync.Context, name: str) -> None:
    code = f"import polysync; polysync.get_context('posix').Event(name={name!r}).set()"
    assert run_python(code).returncode == 0
    assert ctx.Event(name=name).is_set()
    ctx.unlink(name)
    assert not any(name in entry for entry in polysync_shm_entries())


def test_unrelated_process_opens_the_same_name(ctx: polysync.Context, name: str) -> None:
    sem = ctx.Semaphore(0, name=name)
    code = textwrap.dedent(
        f"""
        import polysync
        sem = polysync.get_context("posix").Semaphore(0, name={name!r})
        print(sem.acquire(timeout=30))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        sem.release()
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert out.strip() == "True"


@pytest.mark.parametrize(
    "make",
    [
        lambda c, n: c.Semaphore(-1, name=n),
        lambda c, n: c.BoundedSemaphore("3", name=n),
        lambda c, n: c.Barrier(0, name=n),
        lambda c, n: c.Barrier(2, timeout=float("nan"), name=n),
        lambda c, n: c.Condition(object(), name=n),
    ],
)
def test_bad_input_creates_nothing(ctx: polysync.Context, name: str, make: object) -> None:
    before = polysync_shm_entries()
    with pytest.raises((TypeError, ValueError)):
        make(ctx, name)  # type: ignore[operator]
    assert polysync_shm_entries() == before


def test_kind_mismatch_leaves_the_original_intact(ctx: polysync.Context, name: str) -> None:
    lock = ctx.Lock(name=name)
    lock.acquire()
    before = polysync_shm_entries()
    with pytest.raises(polysync.KindMismatchError):
        ctx.Semaphore(1, name=name)
    assert polysync_shm_entries() == before
    assert ctx.Lock(name=name).locked()


_CREATOR = textwrap.dedent(
    """
    import multiprocessing as mp, sys, time
    import polysync

    def child(lock, event, cond, barrier, go_name, done_name):
        ctx = polysync.get_context("posix")
        go, done = ctx.Event(name=go_name), ctx.Event(name=done_name)
        go.wait(60)  # the creator is killed meanwhile
        event.set()
        with lock:
            pass
        with cond:
            cond.notify_all()
        barrier.wait(30)
        done.set()

    if __name__ == "__main__":
        go_name, done_name = sys.argv[1:]
        ctx = polysync.get_context("posix")
        objs = [ctx.Lock(), ctx.Event(), ctx.Condition(), ctx.Barrier(1)]
        p = mp.get_context("spawn").Process(target=child, args=(*objs, go_name, done_name))
        p.start()
        print(p.pid, flush=True)
        time.sleep(120)
    """
)


@pytest.mark.parametrize("child_fate", ["exits", "killed"])
def test_anonymous_objects_vanish_once_every_user_is_gone(
    tmp_path: object, ctx: polysync.Context, name: str, child_fate: str
) -> None:
    go, done = ctx.Event(name=name), ctx.Event(name=f"{name}.lock")
    # This thread's waiter semaphore lives as long as the thread: make it before counting.
    assert done.wait(0.001) is False
    before = polysync_shm_entries()
    script = os.path.join(str(tmp_path), "creator.py")
    with open(script, "w") as f:
        f.write(_CREATOR)
    creator = subprocess.Popen(
        [sys.executable, script, name, f"{name}.lock"], stdout=subprocess.PIPE, text=True
    )
    child_pid = 0
    try:
        assert creator.stdout is not None
        child_pid = int(creator.stdout.readline())
        creator.send_signal(signal.SIGKILL)
        creator.wait(30)
        # The anonymous objects outlive their killed creator while the child holds them.
        assert polysync_shm_entries() - before
        if child_fate == "exits":
            go.set()
            assert done.wait(60), "the child could not use the objects after the creator died"
        else:
            os.kill(child_pid, signal.SIGKILL)
        assert wait_until(lambda: not _alive(child_pid), timeout=30)
    finally:
        creator.kill()
        creator.wait(30)
        if creator.stdout is not None:
            creator.stdout.close()
        if child_pid and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)
    assert wait_until(lambda: polysync_shm_entries() <= before, timeout=20), sorted(
        polysync_shm_entries() - before
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (its parent was killed and init has not reaped it yet) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_anonymous_objects_vanish_after_normal_exit(no_new_shm_entries: None) -> None:
    code = textwrap.dedent(
        """
        import multiprocessing as mp, polysync
        ctx = polysync.get_context("posix")
        objs = [ctx.Lock(), ctx.RLock(), ctx.Semaphore(2), ctx.BoundedSemaphore(2), ctx.Event(),
                ctx.Condition(), ctx.Barrier(2)]
        objs[4].wait(0.01)
        with objs[5]:
            objs[5].wait(0.01)
        print("ok")
        """
    )
    out = run_python(code)
    assert out.stdout.strip() == "ok", out.stderr


def test_closing_the_last_handle_unlinks_an_anonymous_object(ctx: polysync.Context) -> None:
    before = polysync_shm_entries()
    event = ctx.Event()
    assert polysync_shm_entries() - before
    event.close()
    assert wait_until(lambda: polysync_shm_entries() <= before)


def test_a_handle_the_gc_drops_inside_the_trackers_lock_neither_hangs_nor_leaks(
    ctx: polysync.Context,
) -> None:
    """The GC runs finalizers wherever it happens to be, here in the middle of the
    tracker client's own critical section: the dropped handle must not wait for that
    lock (it used to deadlock), and its objects must still go once the lock is free."""
    from polysync.backends.posix import tracker as _tracker

    before = polysync_shm_entries()
    event = ctx.Event()
    assert polysync_shm_entries() - before
    box: list[object] = [event]
    del event
    collected_while_holding(box, [_tracker.client()._lock])
    ctx.Lock().close()  # the next call into the tracker sends what was queued meanwhile
    assert wait_until(lambda: polysync_shm_entries() <= before)


def test_reopening_a_vanished_anonymous_object_fails_clearly(ctx: polysync.Context) -> None:
    import pickle

    lock = ctx.Lock()
    data = pickle.dumps(lock)
    lock.close()

    def vanished() -> bool:
        try:
            pickle.loads(data).close()
        except polysync.NotFoundError:
            return True
        return False

    # past the transfer grace period the name is gone, and reopening says so
    assert wait_until(vanished, timeout=20)
    with pytest.raises(polysync.NotFoundError, match="does not exist"):
        pickle.loads(data)


def test_locks_are_word_locks_here(ctx: polysync.Context) -> None:
    """CI builds the C extension: the posix Lock and RLock are word locks (_wordlock.c)."""
    from polysync.backends.posix import _wordlock, kernels
    from polysync.derived import liveness

    assert kernels.WordLockKernel is not None
    assert isinstance(ctx.Lock()._kernel, kernels.WordLockKernel)
    assert isinstance(ctx.RLock()._kernel, kernels.WordLockKernel)
    assert "word locks" in ctx.backend.describe()
    # The word records the same identity the Python side decodes (pid and start time).
    assert _wordlock.identity() == liveness.own


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_dead_holders_lock_is_taken_over_by_default(ctx: polysync.Context, kind: str) -> None:
    from polysync.testing import _children
    from polysync.testing.suite import Child

    lock = getattr(ctx, kind)()
    assert Child(_children.acquire_and_exit, lock).result() is True
    assert lock.locked()
    with pytest.warns(polysync.OwnerDiedWarning, match="died holding this lock"):
        assert lock.acquire(timeout=10) is True
    assert lock.owner_died
    lock.release()
    assert not lock.locked()
    assert not lock.owner_died
    assert lock.acquire(False) is True
    lock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_nonblocking_acquire_takes_over_too(ctx: polysync.Context, kind: str) -> None:
    from polysync.testing import _children
    from polysync.testing.suite import Child

    lock = getattr(ctx, kind)()
    assert Child(_children.acquire_and_exit, lock).result() is True
    with pytest.warns(polysync.OwnerDiedWarning):
        assert lock.acquire(False) is True
    lock.release()


def _killed_at_random_moments(
    loop: Callable[..., None], args: tuple[object, ...], seed: int, trials: int = 25
) -> Iterator[None]:
    """Fork a child running ``loop(*args, ready)`` and SIGKILL it at a random moment once it
    loops, *trials* times; yields after each child is gone."""
    import multiprocessing
    import random
    import time

    mp = multiprocessing.get_context("fork")
    rng = random.Random(seed)
    for _ in range(trials):
        read, write = os.pipe()
        child = mp.Process(target=loop, args=(*args, write), daemon=True)
        child.start()
        try:
            assert os.read(read, 1) == b"x"
            time.sleep(rng.uniform(0, 0.005))
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        finally:
            os.close(read)
            os.close(write)
        yield


@contextlib.contextmanager
def _told_of_a_death() -> Iterator[list[bool]]:
    """Record warnings in the block; the list yielded gets whether an OwnerDiedWarning was one."""
    told: list[bool] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield told
    told.append(any(issubclass(w.category, polysync.OwnerDiedWarning) for w in caught))


def _loop_on_lock(name: str, kind: str, ready: int) -> None:
    lock = getattr(polysync.get_context("posix"), kind)(name=name)
    os.write(ready, b"x")
    while True:
        lock.acquire()
        lock.release()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_holders_killed_at_random_moments_never_wedge_it(
    ctx: polysync.Context, name: str, kind: str
) -> None:
    """SIGKILL lands anywhere in acquire/release, C code included: the lock always comes back.

    On 955563b a Lock wedged whenever its holder died holding it, and with
    recover_locks=True a Lock or RLock killed mid-call wedged about one time in five.
    """
    import time

    lock = getattr(ctx, kind)(name=name)
    took_over, worst = 0, 0.0
    for _ in _killed_at_random_moments(_loop_on_lock, (name, kind), seed=8):
        start = time.monotonic()
        with _told_of_a_death() as told:
            assert lock.acquire(timeout=5) is True, "wedged: the dead holder's lock never came back"
        worst = max(worst, time.monotonic() - start)
        assert told[0] == lock.owner_died
        took_over += told[0]
        lock.release()
    assert not lock.locked()
    assert took_over > 0  # some kills landed while it was held (else the test proves nothing)
    assert worst < 5


def _take_and_die(sem: polysync.Semaphore, count: int) -> None:
    for _ in range(count):
        assert sem.acquire(timeout=10)
    os.kill(os.getpid(), signal.SIGKILL)


def _take_close_and_exit(sem: polysync.Semaphore) -> bool:
    taken = sem.acquire(timeout=10)
    sem.close()  # a normal close: what it took was consumed
    return taken


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_a_dead_processs_permits_come_back(ctx: polysync.Context, kind: str) -> None:
    """On 955563b a permit held by a SIGKILLed process was lost for good."""
    import multiprocessing

    sem = getattr(ctx, kind)(3)
    child = multiprocessing.get_context("spawn").Process(target=_take_and_die, args=(sem, 2))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert sem.get_value() == 1
    assert sem.acquire(timeout=5)  # the one left: nothing to tell
    assert not sem.owner_died
    with pytest.warns(polysync.OwnerDiedWarning, match="died holding 2 permit"):
        assert sem.acquire(timeout=5) is True
    assert sem.owner_died
    assert sem.get_value() == 1
    assert sem.acquire(False) is True
    for _ in range(3):
        sem.release()
    assert not sem.owner_died
    assert sem.get_value() == 3


def test_a_closed_handles_permits_were_consumed(ctx: polysync.Context) -> None:
    """A signal's consumer that exits normally keeps what it took, as on redis."""
    from polysync.testing.suite import Child

    sem = ctx.Semaphore(1)
    assert Child(_take_close_and_exit, sem).result() is True
    assert sem.acquire(timeout=0.5) is False
    sem.release()  # a plain signal from a process that took nothing
    assert sem.acquire(False) is True


def _loop_on_semaphore(name: str, ready: int) -> None:
    sem = polysync.get_context("posix").BoundedSemaphore(2, name=name)
    os.write(ready, b"x")
    while True:
        sem.acquire()
        sem.acquire()
        sem.release()
        sem.release()


@pytest.mark.timeout(120)
def test_semaphore_holders_killed_at_random_moments_give_every_permit_back(
    ctx: polysync.Context, name: str
) -> None:
    """SIGKILL anywhere in acquire/release, inside the internal mutex too: no permit is lost
    and none is made up (a BoundedSemaphore of 2 ends at exactly 2)."""
    sem = ctx.BoundedSemaphore(2, name=name)
    deaths = 0
    for _ in _killed_at_random_moments(_loop_on_semaphore, (name,), seed=9):
        with _told_of_a_death() as told:
            assert sem.acquire(timeout=5), "a permit was lost"
            assert sem.acquire(timeout=5), "a permit was lost"
        deaths += told[0]
        assert sem.get_value() == 0
        sem.release()
        sem.release()
        assert sem.get_value() == 2
        with pytest.raises(polysync.NotHeldError):
            sem.release()  # exactly the bound: no permit was made up
    assert deaths > 0


def _loop_on_event_and_barrier(name: str, ready: int) -> None:
    ctx = polysync.get_context("posix")
    event, barrier = ctx.Event(name=name), ctx.Barrier(1, name=f"{name}.lock")
    os.write(ready, b"x")
    while True:
        event.set()
        event.clear()
        barrier.wait()


@pytest.mark.timeout(120)
def test_event_and_barrier_survive_a_death_inside_their_internal_mutex(
    ctx: polysync.Context, name: str
) -> None:
    """On 955563b a process killed inside Event.set() or Barrier.wait() while holding the
    primitive's internal semaphore wedged it for every process."""
    import threading

    event, barrier = ctx.Event(name=name), ctx.Barrier(1, name=f"{name}.lock")
    mended = 0
    for _ in _killed_at_random_moments(_loop_on_event_and_barrier, (name,), seed=10):
        with _told_of_a_death() as told:
            waiter = threading.Thread(target=event.wait, args=(5,))
            waiter.start()
            event.clear()
            event.set()  # takes the mutex: mended if the child died holding it
            waiter.join(10)
            assert not waiter.is_alive()
            try:
                assert barrier.wait(timeout=5) == 0
            except threading.BrokenBarrierError:  # it died inside the barrier: reported
                barrier.reset()
                assert barrier.wait(timeout=5) == 0
        mended += told[0]
    assert mended > 0  # some kills landed inside a mutex (else the test proves nothing)


def _wait_at(barrier: polysync.Barrier) -> None:
    barrier.wait(timeout=60)


def _three_parties(barrier: polysync.Barrier) -> list[int]:
    """The sorted indices of three parties (this thread and two more) passing *barrier*."""
    import threading

    out: list[int] = []
    threads = [
        threading.Thread(target=lambda: out.append(barrier.wait(timeout=10))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    out.append(barrier.wait(timeout=10))
    for t in threads:
        t.join(10)
    return sorted(out)


def test_a_party_killed_while_waiting_holds_the_barrier_up_no_longer(
    ctx: polysync.Context,
) -> None:
    """On 955563b a party killed while waiting never left: the barrier wedged in its drain.
    Until issue 8 it still counted as arrived (two live parties passed with it); now it no
    longer counts, three live parties pass with indices 0, 1 and 2, and the arrival that
    finds it dead is told."""
    import multiprocessing
    import time

    barrier = ctx.Barrier(3)
    child = multiprocessing.get_context("spawn").Process(target=_wait_at, args=(barrier,))
    child.start()
    deadline = time.monotonic() + 30
    while barrier.n_waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert barrier.n_waiting == 1
    assert child.pid is not None
    # n_waiting counts the party as it registers, inside the barrier's internal mutex; a
    # kill there is the death-inside-the-mutex case (a broken barrier, tested on its own):
    # let it leave the mutex for its wait first.
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    with pytest.warns(polysync.OwnerDiedWarning, match=f"process {child.pid} died waiting"):
        first = _three_parties(barrier)
    assert first == [0, 1, 2]
    assert _three_parties(barrier) == [0, 1, 2]  # and the next cycle runs as well
    assert not barrier.broken
    assert barrier.n_waiting == 0


def test_any_process_may_release_a_lock(ctx: polysync.Context) -> None:
    """The multiprocessing contract: a Lock is not owned; another process may release it."""
    from polysync.testing.suite import Child

    lock = ctx.Lock()
    assert lock.acquire()
    assert Child(_release, lock).result() is None
    assert not lock.locked()
    with pytest.raises(polysync.NotHeldError):
        lock.release()


def _release(lock: polysync.Lock) -> None:
    lock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_fencing_tokens_increase_across_holders_and_processes(
    ctx: polysync.Context, kind: str
) -> None:
    from polysync.testing import _children
    from polysync.testing.suite import Child

    lock = getattr(ctx, kind)()
    assert lock.fencing_token is None
    tokens = []
    for _ in range(3):
        with lock:
            tokens.append(lock.fencing_token)
        tokens.append(Child(_children.acquire_token, lock, 10.0).result())
    assert all(isinstance(t, int) for t in tokens)
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)


def test_without_the_extension_locks_still_record_their_holder(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Where _wordlock.c is not built, the pure-Python locks serve, under another header."""
    from polysync.backends.posix import backend as posix_backend
    from polysync.testing import _children
    from polysync.testing.suite import Child

    word = polysync.get_context("posix").Lock(name=name)
    monkeypatch.setattr(posix_backend, "WordLockKernel", None)
    without_fencing = posix_backend.PosixBackend.capabilities - {polysync.Capability.FENCING}
    monkeypatch.setattr(posix_backend.PosixBackend, "capabilities", without_fencing)
    monkeypatch.setattr(polysync.api, "_cache", {})
    fallback_ctx = polysync.get_context("posix")
    with pytest.raises(polysync.KindMismatchError, match="word-lock kind"):
        fallback_ctx.Lock(name=name)
    word.close()
    lock = fallback_ctx.Lock()
    assert "pure-Python locks" in fallback_ctx.backend.describe()
    # forked: the child has no extension either (a spawned one would refuse the header)
    assert Child(_children.acquire_and_exit, lock, method="fork").result() is True
    with pytest.warns(polysync.OwnerDiedWarning):
        assert lock.acquire(timeout=10) is True
    lock.release()


def test_waiter_semaphores_go_with_their_threads(ctx: polysync.Context) -> None:
    import threading

    event = ctx.Event()
    prefix = f"sem.polysync-w-{os.getpid()}-"

    def mine() -> int:
        return sum(n.startswith(prefix) for n in os.listdir(SHM))

    before = mine()
    for _ in range(3):
        threads = [threading.Thread(target=event.wait, args=(0.01,)) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert wait_until(lambda: mine() <= before)


def test_waker_exiting_does_not_take_the_waiters_semaphore(
    ctx: polysync.Context, name: str
) -> None:
    """Regression: a process that woke us used to unlink our waiter semaphore on exit."""
    import time

    event = ctx.Event(name=name)
    setter = (
        "import time, polysync; time.sleep(0.3); "
        f"polysync.get_context('posix').Event(name={name!r}).set()"
    )
    for _ in range(2):  # the same thread waits twice: its waiter semaphore is reused
        proc = subprocess.Popen([sys.executable, "-c", setter])
        try:
            start = time.monotonic()
            assert event.wait(20) is True
            assert time.monotonic() - start < 15
            assert proc.wait(30) == 0
        finally:
            proc.kill()
            proc.wait(30)
        event.clear()
        time.sleep(0.5)  # the setter's tracker has cleaned up after it by now


def test_tracker_listener_is_not_inherited_by_processes_started_meanwhile() -> None:
    # Another thread may start a process while the tracker is being spawned; that process
    # must not get the tracker's listening socket (it would keep the address alive after
    # the tracker ends). The stand-in starts one just before the tracker's posix_spawn.
    code = textwrap.dedent(
        """
        import os, subprocess, sys
        import polysync
        real_spawn = os.posix_spawn
        found, spawned = [], []

        def sockets(pid):
            out = set()
            for entry in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{entry}")
                except OSError:
                    continue
                if target.startswith("socket:"):
                    out.add(target)
            return out

        def spawn(path, argv, env, **kw):
            spawned.append(path)
            other = subprocess.Popen(["sleep", "30"], close_fds=False)
            try:
                found.extend(sockets(other.pid) & sockets(os.getpid()))
            finally:
                other.kill()
                other.wait()
            return real_spawn(path, argv, env, **kw)

        os.posix_spawn = spawn
        os.environ.pop("POLYSYNC_POSIX_TRACKER", None)
        lock = polysync.get_context("posix").Lock()  # anonymous: starts this process's tracker
        assert lock.acquire(timeout=5)
        lock.release()
        print("spawned:", len(spawned), "inherited:", found)
        sys.exit(1 if found or not spawned else 0)
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spawned: 1 inherited: []" in result.stdout
