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
        ctx = polysync.get_context("posix")
        assert type(ctx.Lock()._kernel) is kernels.PosixLock  # type: ignore[attr-defined]
        return ctx


class TestThread(BackendSuite):
    @pytest.fixture
    def context(self) -> polysync.Context:
        return polysync.get_context("thread")
