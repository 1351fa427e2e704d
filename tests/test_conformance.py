"""The shipped conformance suite, run against every built-in backend."""

from __future__ import annotations

import pytest

import polysync
from polysync.testing import BackendSuite


class TestPosix(BackendSuite):
    @pytest.fixture
    def context(self) -> polysync.Context:
        return polysync.get_context("posix")


class TestThread(BackendSuite):
    @pytest.fixture
    def context(self) -> polysync.Context:
        return polysync.get_context("thread")
