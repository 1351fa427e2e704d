"""The postgres backend: PostgreSQL through psycopg 3, shared across processes and hosts.

:mod:`.connection` (options, secret-free descriptions, error translation, the refusal of
transaction pooling), :mod:`.sql` (the schema's tables and functions), :mod:`.server`
(the sessions of one backend instance, its liveness session and bounded waits),
:mod:`.kernels` (the primitives) and :mod:`.backend` (``PostgresBackend``). Nothing here
imports psycopg until a connection is asked for.
"""

from polysync.backends.postgres.backend import PostgresBackend as PostgresBackend
