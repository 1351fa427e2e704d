"""Bad input, property-tested: every factory and method, on the posix, thread, redis and
postgres backends.

Each refused case must raise exactly ``TypeError`` or ``ValueError`` (never
``OverflowError``, ``OSError``, ``UnicodeEncodeError``, ``AssertionError`` or a redis
error), name the offending value (its repr, or its type for a ``TypeError``), and leave
nothing behind: no new polysync entries in /dev/shm, no new names in the thread
backend's table, no new keys in the redis namespace, no new rows in the postgres schema.
The valid edges (0 and ``polysync.MAX_VALUE``, 255-character names, huge timeouts) must
work.

Written for issue 8 ("bad input"); each test failed on 409d9ff, before the fix.
``POLYSYNC_INPUT_EXAMPLES`` sets hypothesis's examples per test (default 50); the number
of cases run per backend is printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import polysync
from polysync import _validate, derived
from polysync.backends.thread import backend as thread_backend

from .conftest import SHM, wait_until

pytestmark = pytest.mark.timeout(300)

MAX_VALUE = polysync.MAX_VALUE
MAX_TIMEOUT = _validate.MAX_TIMEOUT
MAX_NAME = _validate.MAX_NAME_LENGTH
TOKEN = "inp" + secrets.token_hex(4)
EXAMPLES = int(os.environ.get("POLYSYNC_INPUT_EXAMPLES", "50"))
CASES: Counter[str] = Counter()

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the backends ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["posix", "thread", "redis", "postgres"])
def ctx(request: pytest.FixtureRequest) -> Iterator[polysync.Context]:
    if request.param == "postgres":
        pytest.importorskip("psycopg")
        server = request.getfixturevalue("pg_server")
        context = polysync.get_context("postgres", url=server.url, schema=TOKEN)
        yield context
        context.backend.close()
    elif request.param == "redis":
        pytest.importorskip("redis")
        server = request.getfixturevalue("redis_server")
        yield polysync.get_context("redis", url=server.url, prefix=TOKEN)
    else:
        if request.param == "posix" and not sys.platform.startswith("linux"):
            pytest.skip("the /dev/shm check needs Linux")
        yield polysync.get_context(request.param)


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None and CASES:
        counts = ", ".join(f"{backend} {n}" for backend, n in sorted(CASES.items()))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"test_inputs: cases per backend: {counts}")


def residue(ctx: polysync.Context) -> frozenset[str]:
    """What this module's process has stored in *ctx*'s backend (names, entries, keys)."""
    if ctx.name == "posix":
        from polysync.backends.posix import tracker

        own = tracker.own_tracker_id()
        return frozenset(n for n in os.listdir(SHM) if "polysync" in n and (own in n or TOKEN in n))
    if ctx.name == "thread":
        return frozenset(str(name) for name in thread_backend._named)
    backend: Any = ctx.backend
    if ctx.name == "postgres":
        rows = backend.server.query_all(  # rows, and Lock counters of no row
            f"SELECT name FROM {TOKEN}.objects UNION ALL SELECT 'counter ' || c.relname "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = '{TOKEN}' AND c.relkind = 'S' AND c.relname LIKE 'lock%%' "
            f"AND substr(c.relname, 6)::integer NOT IN (SELECT id FROM {TOKEN}.objects)"
        )
        return frozenset(str(row[0]) for row in rows)
    return frozenset(k.decode() for k in backend.client.keys(f"{TOKEN}:*"))


def shown(exc: BaseException, value: object) -> bool:
    """Whether *exc*'s message names *value*: its repr (a long one: its start), or its type."""
    message = str(exc)
    if isinstance(exc, TypeError) and type(value).__name__ in message:
        return True
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return type(value).__name__ in message
    return text in message or (len(text) > 40 and text[:30] in message)


def refused(
    ctx: polysync.Context,
    call: Callable[[], object],
    value: object,
    *,
    also: tuple[type[BaseException], ...] = (),
    mentions: str | None = None,
) -> BaseException:
    """Run *call*, which must refuse *value* cleanly (naming it, or *mentions*); count it."""
    before = residue(ctx)
    try:
        result = call()
    except Exception as exc:  # the type is what is checked
        error: BaseException = exc
    else:
        raise AssertionError(f"{value!r} was accepted (returned {result!r})")
    assert type(error) in (TypeError, ValueError, *also), (
        f"{value!r} raised {type(error).__module__}.{type(error).__qualname__}: {error}"
    )
    if mentions is not None:
        assert mentions in str(error), f"the message does not name {mentions!r}: {error}"
    else:
        assert shown(error, value), f"the message does not name {value!r}: {error}"
    after = residue(ctx)
    assert after <= before or wait_until(lambda: residue(ctx) <= before, 5.0), (
        f"refusing {value!r} left {sorted(residue(ctx) - before)}"
    )
    CASES[ctx.name] += 1
    return error


def accepted(ctx: polysync.Context) -> None:
    CASES[ctx.name] += 1


# -- what bad values look like -----------------------------------------------------------

HUGE_INTS = [2**31, 2**32, 2**53 + 1, 2**63, 2**64, 10**400]
not_numbers = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.decimals(places=2),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
)


def bad_counts(minimum: int) -> st.SearchStrategy[object]:
    """Not an int in ``minimum..MAX_VALUE``: bools, floats, other types, ints outside."""
    return st.one_of(
        st.booleans(),
        st.floats(),
        st.fractions(max_denominator=10),
        not_numbers,
        st.integers(max_value=minimum - 1),
        st.integers(min_value=MAX_VALUE + 1),
        st.sampled_from([*HUGE_INTS, -(10**400)]),
    )


bad_timeouts = st.one_of(
    st.just(math.nan),
    st.floats(max_value=-5e-324),  # the largest negative float (subnormal)
    st.integers(max_value=-1),
    st.just(-(10**400)),
    st.fractions(max_value=Fraction(-1, 10**9)),
    st.booleans(),
    not_numbers.filter(lambda v: v is not None),
)

huge_timeouts = st.one_of(
    st.floats(min_value=MAX_TIMEOUT, exclude_min=True, allow_nan=False),
    st.integers(min_value=int(MAX_TIMEOUT) + 1),
    st.sampled_from([1e19, sys.float_info.max, math.inf, 2**63, 2**64, 10**400]),
    st.fractions(min_value=Fraction(int(MAX_TIMEOUT) + 1)),
)

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
valid_names = st.text(min_size=1, max_size=MAX_NAME).filter(lambda s: "\0" not in s)
bad_names = st.one_of(
    st.integers(),
    st.floats(),
    st.binary(min_size=1, max_size=8),
    st.booleans(),
    st.lists(st.text(max_size=2), max_size=2),
    st.just(""),
    st.text(min_size=MAX_NAME + 1, max_size=MAX_NAME + 40),
    st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda p: p[0] + "\0" + p[1]),
    st.tuples(st.text(max_size=8), surrogates, st.text(max_size=8)).map("".join),
)
blocks = st.one_of(st.none(), st.floats(), st.text(max_size=3), st.lists(st.booleans(), max_size=1))


def a_name(tag: str) -> st.SearchStrategy[str | None]:
    """Anonymous or a fresh readable name of this run (so a leftover is seen)."""
    return st.sampled_from([None, f"{TOKEN}-{tag}"])


def factories(ctx: polysync.Context) -> dict[str, Callable[..., Any]]:
    """Every factory, taking a name."""
    return {
        "Lock": lambda name: ctx.Lock(name=name),
        "RLock": lambda name: ctx.RLock(name=name),
        "Semaphore": lambda name: ctx.Semaphore(1, name=name),
        "BoundedSemaphore": lambda name: ctx.BoundedSemaphore(1, name=name),
        "Event": lambda name: ctx.Event(name=name),
        "Condition": lambda name: ctx.Condition(name=name),
        "Barrier": lambda name: ctx.Barrier(1, name=name),
    }


KINDS = sorted(["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier"])


# -- counts: Semaphore values, Barrier parties, release(n), notify(n) ------------------


def test_max_value_is_exported_and_documented() -> None:
    assert polysync.MAX_VALUE == 2**31 - 1
    assert "MAX_VALUE" in polysync.__dict__
    assert 0 < MAX_TIMEOUT <= threading.TIMEOUT_MAX


@fuzz
@given(value=bad_counts(0), kind=st.sampled_from(["Semaphore", "BoundedSemaphore"]), data=st.data())
def test_semaphore_values_outside_0_to_max_value_are_refused(
    ctx: polysync.Context, value: object, kind: str, data: st.DataObject
) -> None:
    name = data.draw(a_name("sem"))
    error = refused(ctx, lambda: getattr(ctx, kind)(value, name=name), value)
    if isinstance(error, ValueError):
        assert str(MAX_VALUE) in str(error)


@fuzz
@given(parties=bad_counts(1), data=st.data())
def test_barrier_parties_outside_1_to_max_value_are_refused(
    ctx: polysync.Context, parties: object, data: st.DataObject
) -> None:
    name = data.draw(a_name("bar"))
    error = refused(ctx, lambda: ctx.Barrier(parties, name=name), parties)
    if isinstance(error, ValueError):
        assert str(MAX_VALUE) in str(error)


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
@pytest.mark.parametrize("value", [0, 1, MAX_VALUE])
def test_semaphore_edge_values_work(ctx: polysync.Context, kind: str, value: int) -> None:
    for name in (None, f"{TOKEN}-edge-{kind}-{value}"):
        sem = getattr(ctx, kind)(value, name=name)
        try:
            assert sem.get_value() == value
            assert sem.acquire(False) is (value > 0)
            if value:
                sem.release()
                assert sem.get_value() == value
        finally:
            if name is not None:
                sem.unlink()
            sem.close()
        accepted(ctx)


@pytest.mark.parametrize("parties", [1, MAX_VALUE])
def test_barrier_edge_parties_work(ctx: polysync.Context, parties: int) -> None:
    barrier = ctx.Barrier(parties, name=f"{TOKEN}-edge-bar-{parties}")
    try:
        assert barrier.parties == parties
        if parties == 1:
            assert barrier.wait(0) == 0
        else:
            assert barrier.n_waiting == 0
    finally:
        barrier.unlink()
        barrier.close()
    accepted(ctx)


@fuzz
@given(n=bad_counts(1), kind=st.sampled_from(["Semaphore", "BoundedSemaphore"]))
def test_release_counts_outside_1_to_max_value_are_refused(
    ctx: polysync.Context, n: object, kind: str
) -> None:
    sem = getattr(ctx, kind)(1)
    try:
        assert sem.acquire(False)
        refused(ctx, lambda: sem.release(n), n)  # type: ignore[arg-type]
        assert sem.get_value() == 0
    finally:
        sem.close()


@fuzz
@given(value=st.integers(0, MAX_VALUE), n=st.integers(2, MAX_VALUE))
def test_a_release_past_max_value_is_refused_before_posting(
    ctx: polysync.Context, value: int, n: int
) -> None:
    if value + n <= MAX_VALUE:
        value = MAX_VALUE - n + 1  # always past: a valid release of ~2**31 would be slow on posix
    sem = ctx.Semaphore(value)
    try:
        started = time.monotonic()
        error = refused(ctx, lambda: sem.release(n), n)
        assert time.monotonic() - started < 5.0
        assert str(MAX_VALUE) in str(error)
        assert sem.get_value() == value
    finally:
        sem.close()


def test_a_release_of_one_at_max_value_is_refused(ctx: polysync.Context) -> None:
    sem = ctx.Semaphore(MAX_VALUE)
    try:
        error = refused(ctx, sem.release, 1)
        assert str(MAX_VALUE) in str(error)
        assert sem.get_value() == MAX_VALUE
    finally:
        sem.close()


def test_a_release_up_to_max_value_works(ctx: polysync.Context) -> None:
    sem = ctx.Semaphore(MAX_VALUE - 3)
    try:
        sem.release(3)
        assert sem.get_value() == MAX_VALUE
    finally:
        sem.close()
    bounded = ctx.BoundedSemaphore(MAX_VALUE)
    try:
        assert bounded.acquire(False)
        bounded.release()
        assert bounded.get_value() == MAX_VALUE
        refused(ctx, lambda: bounded.release(2), 2, also=(polysync.NotHeldError,))
    finally:
        bounded.close()
    accepted(ctx)


@fuzz
@given(n=st.one_of(st.booleans(), st.floats(), not_numbers, st.integers(max_value=-1)))
def test_notify_counts_are_checked(ctx: polysync.Context, n: object) -> None:
    cond = ctx.Condition()
    try:
        with cond:
            refused(ctx, lambda: cond.notify(n), n)  # type: ignore[arg-type]
    finally:
        cond.close()


@pytest.mark.parametrize(
    "n", [0, 1, MAX_VALUE, 2**63, 10**400], ids=["0", "1", "MAX_VALUE", "2**63", "10**400"]
)
def test_notify_of_any_nonnegative_int_works(ctx: polysync.Context, n: int) -> None:
    cond = ctx.Condition()
    try:
        with cond:
            cond.notify(n)
    finally:
        cond.close()
    accepted(ctx)


# -- names -------------------------------------------------------------------------------


@fuzz
@given(name=bad_names, kind=st.sampled_from(KINDS))
def test_bad_names_are_refused_by_every_factory(
    ctx: polysync.Context, name: object, kind: str
) -> None:
    make = factories(ctx)[kind]
    refused(ctx, lambda: make(name), name)


@fuzz
@given(name=bad_names.filter(lambda n: n is not None))
def test_bad_names_are_refused_by_unlink(ctx: polysync.Context, name: object) -> None:
    refused(ctx, lambda: ctx.unlink(name), name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [None, 0, b"x"], ids=repr)
def test_unlink_without_a_str_name_is_a_type_error(ctx: polysync.Context, name: object) -> None:
    error = refused(ctx, lambda: ctx.unlink(name), name)  # type: ignore[arg-type]
    assert isinstance(error, TypeError)


def test_lone_surrogates_are_a_value_error_from_the_name_check() -> None:
    with pytest.raises(ValueError, match="UTF-8") as info:
        _validate.name("a\udc80b")
    assert type(info.value) is ValueError
    assert repr("a\udc80b") in str(info.value)


def _long_name(stem: str, fill: str) -> str:
    return (f"{TOKEN}-{stem}-" + fill * MAX_NAME)[:MAX_NAME]


def _stored(ctx: polysync.Context, name: str) -> bool:
    """Whether the named object (any of its parts) is stored in the backend."""
    if ctx.name == "posix":
        from polysync.backends.posix.names import posix_name

        key = ctx.backend.object_name(name)
        entries = set(os.listdir(SHM))
        parts = [key.child("c")] + [key.child(f"s{i}") for i in range(derived.MAX_SEMS)]
        return any(
            p.lstrip("/") in entries or "sem." + p.lstrip("/") in entries
            for p in map(posix_name, parts)
        )
    if ctx.name == "thread":
        return any(n.key == name for n in thread_backend._named)
    return bool(residue(ctx) - _redis_before)


_redis_before: frozenset[str] = frozenset()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fill", ["c", ".", "é", "\U0001f512", "{x}", "/:\\"], ids=repr)
def test_every_factory_takes_a_name_of_the_maximum_length(
    ctx: polysync.Context, kind: str, fill: str
) -> None:
    global _redis_before
    name = _long_name(kind, fill)
    assert len(name) == MAX_NAME
    _redis_before = residue(ctx)
    first = factories(ctx)[kind](name)
    again = factories(ctx)[kind](name)
    try:
        assert first.name == name
        if kind in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"):
            assert first.acquire(False)
            if kind != "RLock" and kind != "Condition":
                assert not again.acquire(False)  # the same object
            first.release()
        assert _stored(ctx, name)
    finally:
        first.unlink()
        first.close()
        again.close()
    assert not _stored(ctx, name)
    if kind == "Condition" and ctx.name not in ("redis", "postgres"):  # (seen in the store)
        assert not _stored(ctx, name + ".lock")  # its lock went with it
    accepted(ctx)


@fuzz
@given(name=valid_names)
def test_any_valid_name_opens_and_unlinks(ctx: polysync.Context, name: str) -> None:
    name = f"{TOKEN}{name}"[:MAX_NAME]
    cond = ctx.Condition(name=name)
    try:
        with cond:
            cond.notify()
    finally:
        cond.unlink()
        cond.close()
    assert ctx.unlink(name) is False
    accepted(ctx)


# -- timeouts ----------------------------------------------------------------------------


USES: dict[str, Callable[[Any, object], object]] = {
    "Lock.acquire": lambda o, t: o.acquire(timeout=t),
    "Lock.acquire(True, t)": lambda o, t: o.acquire(True, t),
    "RLock.acquire": lambda o, t: o.acquire(timeout=t),
    "Semaphore.acquire": lambda o, t: o.acquire(True, t),
    "BoundedSemaphore.acquire": lambda o, t: o.acquire(timeout=t),
    "Lock.acquire(blocking=)": lambda o, t: o.acquire(blocking=True, timeout=t),
    "Event.wait": lambda o, t: o.wait(t),
    "Condition.acquire": lambda o, t: o.acquire(timeout=t),
    "Condition.wait": lambda o, t: o.wait(t),
    "Condition.wait_for": lambda o, t: o.wait_for(lambda: False, t),
    "Barrier.wait": lambda o, t: o.wait(t),
}


@contextlib.contextmanager
def timed(ctx: polysync.Context, method: str) -> Iterator[Callable[[object], object]]:
    """The call of *method* with a given timeout, on an object made (and closed) here."""
    if method == "Barrier(timeout=)":
        yield lambda t: ctx.Barrier(1, timeout=t).close()
        return
    kind = method.split(".")[0]
    obj = factories(ctx)[kind](None)
    use = USES[method]
    try:
        with contextlib.ExitStack() as held:
            if kind == "Condition" and method != "Condition.acquire":
                held.enter_context(obj)  # wait() needs the lock
            yield lambda t: use(obj, t)
    finally:
        obj.close()


TIMED = [
    "Barrier(timeout=)",
    "Barrier.wait",
    "BoundedSemaphore.acquire",
    "Condition.acquire",
    "Condition.wait",
    "Condition.wait_for",
    "Event.wait",
    "Lock.acquire",
    "Lock.acquire(True, t)",
    "Lock.acquire(blocking=)",
    "RLock.acquire",
    "Semaphore.acquire",
]


@fuzz
@given(timeout=bad_timeouts, method=st.sampled_from(TIMED))
def test_bad_timeouts_are_refused_everywhere(
    ctx: polysync.Context, timeout: object, method: str
) -> None:
    with timed(ctx, method) as call:
        refused(ctx, lambda: call(timeout), timeout)


@fuzz
@given(timeout=huge_timeouts, method=st.sampled_from(TIMED))
def test_huge_timeouts_wait_forever_and_raise_nothing(
    ctx: polysync.Context, timeout: object, method: str
) -> None:
    assert _validate.timeout(timeout) is None
    if method == "Event.wait":
        event = ctx.Event()
        try:
            event.set()
            assert event.wait(timeout) is True  # type: ignore[arg-type]
        finally:
            event.close()
    elif method in ("Condition.wait", "Condition.wait_for"):
        cond = ctx.Condition()
        ready: list[bool] = []

        def notify() -> None:
            with cond:
                ready.append(True)
                cond.notify()

        try:
            with cond:
                threading.Thread(target=notify, daemon=True).start()
                if method == "Condition.wait":
                    assert cond.wait(timeout) is True  # type: ignore[arg-type]
                else:
                    assert cond.wait_for(lambda: ready, timeout) == [True]  # type: ignore[arg-type]
        finally:
            cond.close()
    else:
        with timed(ctx, method) as call:
            assert call(timeout) in (True, 0, None)
    accepted(ctx)


@pytest.mark.parametrize(
    "timeout",
    [1e10, 1e19, sys.float_info.max, math.inf, 2**40, 2**63, 10**400],
    ids=["1e10", "1e19", "float_max", "inf", "2**40", "2**63", "10**400"],
)
@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "Event", "Condition"])
def test_a_huge_timeout_waits_for_the_release(
    ctx: polysync.Context, timeout: object, kind: str
) -> None:
    """The wait really blocks (no immediate OSError or OverflowError) and ends when woken."""
    obj: Any = getattr(ctx, kind)(0) if kind == "Semaphore" else getattr(ctx, kind)()
    gate = threading.Event()
    held = threading.Event()

    def other() -> None:  # holds the lock, then wakes the waiter once the gate opens
        if kind in ("Lock", "RLock"):
            obj.acquire()
            held.set()
            gate.wait(10)
            obj.release()
            return
        held.set()
        gate.wait(10)
        if kind == "Condition":
            with obj:
                obj.notify_all()
        else:
            obj.release() if kind == "Semaphore" else obj.set()

    helper = threading.Thread(target=other, daemon=True)
    helper.start()
    assert held.wait(10)
    timer = threading.Timer(0.05, gate.set)
    timer.start()
    try:
        if kind == "Event":
            assert obj.wait(timeout)
        elif kind == "Condition":
            with obj:
                assert obj.wait(timeout)
        else:
            assert obj.acquire(timeout=timeout)
            obj.release()
    finally:
        gate.set()
        timer.join()
        helper.join(10)
        obj.close()
    accepted(ctx)


# -- block / blocking --------------------------------------------------------------------


@fuzz
@given(
    block=blocks,
    kind=st.sampled_from(["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"]),
    keyword=st.booleans(),
)
def test_bad_block_flags_are_refused(
    ctx: polysync.Context, block: object, kind: str, keyword: bool
) -> None:
    obj = factories(ctx)[kind](None)
    try:
        if keyword and block is not None:  # blocking=None means "not given"
            refused(ctx, lambda: obj.acquire(blocking=block), block)
        else:
            refused(ctx, lambda: obj.acquire(block), block)
        assert obj.acquire(False)
        obj.release()
    finally:
        obj.close()


@fuzz
@given(timeout=st.one_of(st.floats(0, 10), st.integers(0, 10), huge_timeouts))
def test_a_nonblocking_acquire_with_a_timeout_is_refused(
    ctx: polysync.Context, timeout: object
) -> None:
    lock = ctx.Lock()
    try:
        refused(ctx, lambda: lock.acquire(False, timeout), timeout)  # type: ignore[arg-type]
        assert not lock.locked()
    finally:
        lock.close()


# -- options and other arguments ---------------------------------------------------------

bad_seconds = st.one_of(
    st.sampled_from(
        [math.inf, -math.inf, math.nan, 0, 0.0, -1, 1e300, 2**64, 10**400, 2**31 + 1, 1e-9]
    ),
    st.floats(max_value=0.0),
    st.floats(min_value=float(2**31), exclude_min=True),
    st.integers(max_value=0),
    st.integers(min_value=2**31 + 1),
    st.booleans(),
    st.text(max_size=3),
    st.just(Decimal("1")),
)


@fuzz
@given(seconds=bad_seconds, option=st.sampled_from(["lease", "anonymous_ttl"]))
def test_redis_context_options_are_checked_before_connecting(
    ctx: polysync.Context, seconds: object, option: str
) -> None:
    if ctx.name != "redis":
        pytest.skip("redis options")
    backend: Any = ctx.backend
    url = backend.settings["url"]
    error = refused(
        ctx,
        lambda: polysync.get_context("redis", url=url, prefix=TOKEN, **{option: seconds}),
        seconds,
    )
    assert option in str(error)


@fuzz
@given(
    seconds=bad_seconds.filter(lambda s: s is not None),
    kind=st.sampled_from(["Lock", "RLock", "Semaphore", "BoundedSemaphore"]),
    data=st.data(),
)
def test_redis_lease_of_a_primitive_is_checked_before_any_key_is_written(
    ctx: polysync.Context, seconds: object, kind: str, data: st.DataObject
) -> None:
    if ctx.name != "redis":
        pytest.skip("redis options")
    name = data.draw(a_name(f"lease-{kind}"))
    make: Any = getattr(ctx, kind)
    error = refused(ctx, lambda: make(name=name, lease=seconds), seconds)
    assert "lease" in str(error)


@pytest.mark.parametrize("kind", ["Event", "Condition", "Barrier"])
def test_redis_lease_on_a_primitive_without_one_writes_nothing(
    ctx: polysync.Context, kind: str
) -> None:
    if ctx.name != "redis":
        pytest.skip("redis options")
    name = f"{TOKEN}-nolease-{kind}"
    make: Any = getattr(ctx, kind)
    args = (1,) if kind == "Barrier" else ()
    refused(ctx, lambda: make(*args, name=name, lease=5.0), kind, mentions=kind)
    refused(ctx, lambda: ctx.Lock(name=name, on_lost=3), 3)


def test_redis_edge_leases_work(ctx: polysync.Context) -> None:
    if ctx.name != "redis":
        pytest.skip("redis options")
    backend: Any = ctx.backend
    url = backend.settings["url"]
    for seconds in (0.001, 1, float(2**31), 2**31):
        edge = polysync.get_context("redis", url=url, prefix=TOKEN, lease=seconds)
        lock = edge.Lock(lease=seconds)
        try:
            assert lock.acquire(False)
            lock.release()
        finally:
            lock.close()
    accepted(ctx)


def test_the_removed_posix_option_recover_locks_is_refused() -> None:
    """Every posix Lock recovers now: the old opt-in is an unknown option, named."""
    with pytest.raises(TypeError, match="recover_locks"):
        polysync.get_context("posix", recover_locks=True)


@fuzz
@given(kind=st.sampled_from(KINDS), option=st.sampled_from(["leese", "size", "colour"]))
def test_unknown_primitive_options_are_refused(
    ctx: polysync.Context, kind: str, option: str
) -> None:
    make: Any = getattr(ctx, kind)
    args = (1,) if kind == "Barrier" else ()
    error = refused(
        ctx, lambda: make(*args, name=f"{TOKEN}-opt", **{option: 1}), option, mentions=option
    )
    assert isinstance(error, TypeError)


@fuzz
@given(other=st.one_of(st.integers(), st.floats(), st.binary(max_size=3), st.just(object())))
def test_other_arguments_are_type_checked(ctx: polysync.Context, other: object) -> None:
    refused(ctx, lambda: ctx.Condition(other), other)  # type: ignore[arg-type]
    refused(ctx, lambda: ctx.Barrier(2, other), other)  # type: ignore[arg-type]
    refused(ctx, lambda: polysync.Lock(ctx=other), other)  # type: ignore[arg-type]
    refused(ctx, lambda: polysync.get_context(other), other)  # type: ignore[arg-type]
