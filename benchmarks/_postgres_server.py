"""The PostgreSQL benchmarks' server: the one given by URL, or a private cluster of their own.

A private cluster is the test suite's (``tests/pg_servers``: initdb into a temporary
directory, pg_ctl on a free loopback port, never the machine's own 5432), stopped when
the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    """*url* itself, or the URL of a private cluster running for the block."""
    if url:
        yield url
        return
    from tests.pg_servers import PrivatePostgres

    with PrivatePostgres() as pg:
        yield pg.url
