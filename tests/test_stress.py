"""Stress: N workers x K operations on one primitive, with an overlap detector.

Inside each acquisition a worker marks itself a holder in a shared memory-mapped file,
counts the holders it sees, and does a non-atomic read-modify-write of a counter with a
tiny sleep in between (``tests/_trials.py``). No worker may see more holders than the
primitive admits, and under an exclusive primitive no update may be lost. The no-lock
control runs the same loop bare and must see overlap: proof that the detector can fail.

Backends: posix and redis with processes, thread with threads. CI size: 4 x 200;
``benchmarks/stress_run.py`` runs the full size (8 x 10,000).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import polysync
from tests import _trials

WORKERS = 4
OPS = 200
BACKENDS = ("posix", "thread", "redis")
PRIMITIVE_VARIANTS = [v for v in _trials.STRESS_VARIANTS if v != _trials.CONTROL]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def no_shm_leftovers() -> Iterator[None]:
    before = _trials.shm_entries()
    yield None

    def leftovers() -> set[str]:
        return _trials.own_shm_entries(_trials.shm_entries() - before, ())

    _trials.wait_until(lambda: not leftovers(), 10.0)
    assert not leftovers(), f"left in /dev/shm: {sorted(leftovers())}"


def _context(backend: str, request: pytest.FixtureRequest) -> polysync.Context:
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        return _trials.make_context("redis", redis_url=server.url)
    return _trials.make_context(backend)


@pytest.mark.parametrize("variant", PRIMITIVE_VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_overlap_beyond_what_the_primitive_admits(
    backend: str, variant: str, request: pytest.FixtureRequest, no_shm_leftovers: None
) -> None:
    ctx = _context(backend, request)
    result = _trials.run_stress(
        ctx, backend, variant, WORKERS, OPS, threads=backend == "thread", deadline=90.0
    )
    assert result.ok, result.describe()


@pytest.mark.parametrize("runners", ["processes", "threads"])
def test_the_detector_sees_overlap_without_a_lock(runners: str) -> None:
    result = _trials.run_stress(
        None, runners, _trials.CONTROL, WORKERS, OPS, threads=runners == "threads", deadline=90.0
    )
    assert result.completed == result.expected, result.describe()
    assert result.overlap_detected, f"the detector saw no overlap: {result.describe()}"
    assert result.max_concurrent > 1, result.describe()
