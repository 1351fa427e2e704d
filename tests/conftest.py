"""Shared helpers for polysync's own tests: /dev/shm snapshots and bounded subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

pytest_plugins = ["tests.redis_support"]

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


@pytest.fixture
def no_new_shm_entries() -> object:
    """Fail the test if it leaves polysync entries in /dev/shm once its processes are gone."""
    before = polysync_shm_entries()
    yield None
    import gc

    gc.collect()
    assert wait_until(lambda: polysync_shm_entries() <= before), (
        f"left in /dev/shm: {sorted(polysync_shm_entries() - before)}"
    )
