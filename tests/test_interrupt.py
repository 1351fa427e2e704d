"""Ctrl-C interrupts every blocking wait promptly and leaves the primitive consistent."""

from __future__ import annotations

import textwrap

import pytest

from .conftest import run_python

pytestmark = pytest.mark.timeout(60)

_PRELUDE = textwrap.dedent(
    """
    import os, signal, threading, time, polysync
    ctx = polysync.get_context({backend!r}, **{options!r})

    def queued(obj):  # waiters still queued: an interrupted one must not stay behind
        waiting = obj.statistics().waiting
        assert waiting is not None, "every backend here counts queued waiters"
        return waiting

    def interrupted(fn):
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            fn()
        except KeyboardInterrupt:
            return round(time.monotonic() - start, 1)
        return "not interrupted"
    """
)

_CASES = {
    "lock": """
        lock = ctx.Lock(); lock.acquire()
        print(interrupted(lock.acquire), interrupted(lambda: lock.acquire(timeout=20)))
        print(not lock.acquire(False)); lock.release(); print(lock.acquire(False))
    """,
    "rlock": """
        rlock = ctx.RLock()
        t = threading.Thread(target=rlock.acquire); t.start(); t.join()
        print(interrupted(rlock.acquire), interrupted(lambda: rlock.acquire(timeout=20)))
        print(not rlock._is_owned(), not rlock.acquire(False))
    """,
    "semaphore": """
        sem = ctx.Semaphore(0)
        print(interrupted(sem.acquire), interrupted(lambda: sem.acquire(timeout=20)))
        print(sem.get_value() == 0); sem.release(); print(sem.acquire(False))
    """,
    "event": """
        ev = ctx.Event()
        print(interrupted(ev.wait), interrupted(lambda: ev.wait(20)))
        print(queued(ev) == 0)
        ev.set(); print(ev.wait(1))
    """,
    "condition": """
        cond = ctx.Condition()
        def wait():
            with cond:
                try:
                    cond.wait()
                finally:
                    assert cond.lock._is_owned()
        print(interrupted(wait), interrupted(wait))
        print(queued(cond) == 0); print(not cond.lock.locked())
    """,
    "barrier": """
        bar = ctx.Barrier(2)
        print(interrupted(bar.wait), interrupted(lambda: bar.wait(20)))
        print(bar.n_waiting == 0); print(True)
    """,
}


@pytest.mark.parametrize("backend", ["posix", "thread", "redis", "postgres"])
@pytest.mark.parametrize("case", sorted(_CASES))
def test_ctrl_c_interrupts_and_leaves_state_consistent(
    backend: str, case: str, request: pytest.FixtureRequest
) -> None:
    options = {}
    if backend == "redis":  # a wait there is a blocking read on a socket
        options = {"url": request.getfixturevalue("redis_server").url, "prefix": "ctrl-c"}
    if backend == "postgres":  # a Lock waits blocked in the server; the others on NOTIFY
        pytest.importorskip("psycopg")
        options = {"url": request.getfixturevalue("pg_server").url, "schema": "ctrl_c"}
    code = _PRELUDE.format(backend=backend, options=options) + textwrap.dedent(_CASES[case])
    out = run_python(code, timeout=50)
    lines = out.stdout.split()
    assert out.returncode == 0, out.stderr
    first, second, *checks = lines
    for waited in (first, second):
        assert waited != "not", out.stdout
        assert 0.2 <= float(waited) < 3.0, out.stdout
    assert checks == ["True", "True"], out.stdout
