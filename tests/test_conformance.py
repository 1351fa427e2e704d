"""The shipped conformance suite, run against every built-in backend."""

from __future__ import annotations

import pytest

import polysync
from polysync.testing import BackendSuite


class TestPosix(BackendSuite):
    @pytest.fixture
    def context(self) -> polysync.Context:
        return polysync.get_context("posix")


class TestPosixWithoutSemLock(BackendSuite):
    """The posix backend where CPython's SemLock is missing: posix_ipc does the waits too."""

    @pytest.fixture
    def context(self, monkeypatch: pytest.MonkeyPatch) -> polysync.Context:
        from polysync.backends.posix import kernels

        monkeypatch.setattr(kernels, "_SemLock", None)
        # A fresh backend: one cached by an earlier test has waiters made with SemLock.
        monkeypatch.setattr(polysync.api, "_cache", {})
        ctx = polysync.get_context("posix")
        from polysync.derived.parking import waiters_of

        # What still waits on a posix_ipc semaphore: each thread's waiter, for the lots.
        waiter = waiters_of(ctx.backend).current()  # type: ignore[arg-type]
        assert waiter.sem._fast is None  # type: ignore[attr-defined]
        return ctx


class TestPosixWithoutExtensions(BackendSuite):
    """The posix backend where _wordlock.c is not built: the pure-Python locks of the floor.

    POLYSYNC_NO_EXTENSIONS=1 reaches the processes the suite starts, as on such a machine.
    """

    @pytest.fixture
    def context(self, monkeypatch: pytest.MonkeyPatch) -> polysync.Context:
        from polysync import derived
        from polysync.backends.posix import backend

        monkeypatch.setenv("POLYSYNC_NO_EXTENSIONS", "1")
        monkeypatch.setattr(backend, "WordLockKernel", None)
        monkeypatch.setattr(backend, "WordSemaphoreKernel", None)
        monkeypatch.setattr(backend, "WordMutex", None)
        without_fencing = backend.PosixBackend.capabilities - {polysync.Capability.FENCING}
        monkeypatch.setattr(backend.PosixBackend, "capabilities", without_fencing)
        monkeypatch.setattr(polysync.api, "_cache", {})
        ctx = polysync.get_context("posix")
        assert isinstance(ctx.Lock()._kernel, derived.RecoverableLock)
        assert isinstance(ctx.Semaphore()._kernel, derived.DerivedSemaphore)
        return ctx


class TestThread(BackendSuite):
    @pytest.fixture
    def context(self) -> polysync.Context:
        return polysync.get_context("thread")
