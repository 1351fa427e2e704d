"""The redis backend: every primitive as atomic Lua over keys sharing one hash tag, across hosts.

Keys of one primitive are ``<prefix>:{<name>}:<part>``; the braces make them one Redis
Cluster hash slot, so every script runs on one node. Waiters block on their own list
and are woken by the script that grants them (never a sleep loop). Locks, RLocks and
Semaphore permits are leases renewed by a background thread while the holder's process
lives, and every grant carries a fencing token that strictly increases per primitive.
Anonymous objects expire ``anonymous_ttl`` seconds after the last process using them
stops touching them; named ones persist until ``unlink()``. redis-py's errors reach
users as polysync's own, chained.
"""

from polysync.backends.redis.backend import RedisBackend as RedisBackend
from polysync.errors import LeaseLostError as LeaseLostError
