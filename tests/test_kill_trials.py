"""Kill trials: a process using a primitive is SIGKILLed; another process must still use it.

For every primitive on posix and redis (thread has no process to kill), in two modes:
``holding`` (the victim holds the primitive, or waits inside Event/Condition/Barrier
``wait()``, when it is killed) and ``random`` (the victim is killed at a random moment
of a tight loop on the primitive while a survivor loops on it too). The survivor then
checks, each call bounded, that the primitive works again within the bound: posix 1 s,
redis the lease (1 s here) plus 2 s. See ``tests/_trials.py`` for what each check does,
and ``benchmarks/kill_trials.py`` for the same trials at 100 per variant.

Variants that fail on the current code are listed in :data:`KNOWN_FAILURES`, with how
they fail; they are strict xfails, so a fix makes its test XPASS (fail) until its entry
is removed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import polysync
from tests import _trials

# Known failures: (backend, primitive, mode) -> how it fails today. Remove an entry when
# its fix lands (the strict xfail turns into a failure, XPASS, until you do).
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}

#: Of the known failures, those that fail only in some trials: a non-strict xfail, as a
#: run of passing trials proves no fix. Every listed variant runs up to
#: KNOWN_FAILURE_TRIALS trials and stops at its first failure, so a variant that fails
#: in a third of its trials or more can stay strict.
SOMETIMES: frozenset[tuple[str, str, str]] = frozenset()

#: Trials per variant at CI size.
CI_TRIALS = {"holding": 3, "random": 5}
#: Trials of a variant listed in KNOWN_FAILURES (it stops at the first failure).
KNOWN_FAILURE_TRIALS = 20
#: The redis lease in these trials (the recovery bound is this plus 2 s).
LEASE = 1.0

BACKENDS = ("posix", "redis")

pytestmark = pytest.mark.timeout(180)


def _variants() -> Iterator[object]:
    keys = [(b, p, m) for b in BACKENDS for p in _trials.PRIMITIVES for m in _trials.MODES]
    for key in keys:
        marks = []
        if key in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=key not in SOMETIMES, reason=KNOWN_FAILURES[key]))
        yield pytest.param(*key, id="-".join(key), marks=marks)


@pytest.fixture
def names() -> Iterator[list[str]]:
    """The names a test used; nothing of them (or of its processes) stays in /dev/shm."""
    used: list[str] = []
    before = _trials.shm_entries()
    yield used

    def leftovers() -> set[str]:
        return _trials.own_shm_entries(_trials.shm_entries() - before, used)

    _trials.wait_until(lambda: not leftovers(), 10.0)
    assert not leftovers(), f"left in /dev/shm: {sorted(leftovers())}"


def _context(backend: str, request: pytest.FixtureRequest) -> polysync.Context:
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        return _trials.make_context("redis", redis_url=server.url, lease=LEASE)
    return _trials.make_context(backend)


@pytest.mark.parametrize(("backend", "primitive", "mode"), list(_variants()))
def test_primitive_survives_a_killed_user(
    backend: str, primitive: str, mode: str, names: list[str], request: pytest.FixtureRequest
) -> None:
    ctx = _context(backend, request)
    key = (backend, primitive, mode)
    trials = KNOWN_FAILURE_TRIALS if key in KNOWN_FAILURES else CI_TRIALS[mode]
    results = _trials.run_trials(
        ctx,
        backend,
        primitive,
        mode,
        trials,
        bound=_trials.recovery_bound(backend, LEASE),
        stop_on_failure=True,
        names=names,
    )
    failed = [r for r in results if not r.recovered]
    assert not failed, "\n".join(r.line() for r in failed)
    if mode == "holding" and primitive in ("Lock", "RLock"):
        unreported = [r for r in results if not r.owner_died]
        assert not unreported, (
            "the death was not reported (no OwnerDiedWarning, no owner_died):\n"
            + ("\n".join(r.line() for r in unreported))
        )


def test_redis_trials_leave_no_key_without_a_ttl(request: pytest.FixtureRequest) -> None:
    """After the trials (unlinked), what is left on the server expires by itself."""
    server = request.getfixturevalue("redis_server")
    keys = server.command("KEYS", "pstrials:*")
    lasting = [k for k in keys if int(server.command("PTTL", k)) == -1]
    assert not lasting, f"keys that never expire: {lasting[:10]}"
