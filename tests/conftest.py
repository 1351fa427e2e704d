"""Shared helpers for polysync's own tests: /dev/shm snapshots, bounded subprocesses, GC runs."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

pytest_plugins = ["pytester", "tests.redis_servers.fixtures", "tests.pg_servers.fixtures"]

SHM = "/dev/shm"


def polysync_shm_entries() -> set[str]:
    """Names in /dev/shm that belong to polysync."""
    try:
        return {n for n in os.listdir(SHM) if "polysync" in n}
    except FileNotFoundError:  # not Linux
        return set()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_python(
    code: str, timeout: float = 60.0, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter (an unrelated process), bounded by *timeout*."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def collected_while_holding(box: list[Any], locks: Sequence[Any], timeout: float = 10.0) -> int:
    """Move what *box* holds into a cycle that only the GC frees, then collect it in a new
    thread that holds *locks*, as the GC may find a thread anywhere. Returns that thread's
    ident; fails the test if the collection does not end within *timeout* (a deadlock)."""
    done = threading.Event()
    idents: list[int] = []

    def collect() -> None:
        idents.append(threading.get_ident())
        with contextlib.ExitStack() as held:
            for lock in locks:
                held.enter_context(lock)
            gc.collect()
        done.set()

    gc.disable()  # only that collection may run the finalizers
    try:
        cycle: list[Any] = list(box)
        box.clear()
        cycle.append(cycle)
        del cycle
        threading.Thread(target=collect, daemon=True).start()
        assert done.wait(timeout), "a finalizer deadlocked on a lock its thread held"
    finally:
        gc.enable()
    return idents[0]


@pytest.fixture
def no_new_shm_entries() -> object:
    """Fail the test if it leaves polysync entries in /dev/shm once its processes are gone."""
    before = polysync_shm_entries()
    yield None
    gc.collect()
    assert wait_until(lambda: polysync_shm_entries() <= before), (
        f"left in /dev/shm: {sorted(polysync_shm_entries() - before)}"
    )


class Children:
    """Child processes (fresh interpreters) that open *ctx*'s backend with its settings and
    run a body of code; all killed at the end (the fault tests of the remote backends)."""

    def __init__(self, ctx: Any) -> None:
        self.backend = ctx.name
        self.settings = ctx.backend.picklable_settings()
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, body: str) -> subprocess.Popen[str]:
        code = (
            "import polysync, time\n"
            f"ctx = polysync.get_context({self.backend!r}, **{self.settings!r})\n"
            + textwrap.dedent(body)
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def expect(proc: subprocess.Popen[str], word: str) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(word), f"child said {line!r}, expected {word!r}"
        return line

    def kill_all(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
