"""The postgres backend (in progress): PostgreSQL through psycopg 3, shared across hosts.

This first slice holds the connection layer only (:mod:`.connection`: options, secret-free
descriptions, error translation, the refusal of transaction pooling); the primitives,
built on session advisory locks and ``LISTEN``/``NOTIFY``, and the backend class come
later, and the backend is not registered yet. Nothing here imports psycopg until a
connection is asked for.
"""
