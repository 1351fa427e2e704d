"""The posix backend: POSIX named semaphores and shared memory through posix_ipc, one host.

Object names map to POSIX names injectively: a name made of ``[A-Za-z0-9_.-]`` that fits
is kept readable (``/polysync-n-jobs.s0``); any other name is hashed
(``/polysync-h-<sha256>``), and the letter after ``polysync-`` keeps the two forms apart.
Objects are created with mode 0600. Named objects persist until ``unlink()``; anonymous
ones and per-thread waiter semaphores are reference-counted by the cleanup tracker
(:mod:`polysync.backends._tracker`) and unlinked when the last process using them exits.

posix_ipc creates, opens and unlinks every object. The waits, and a Lock's checked
release, go through CPython's own semaphore type (``_multiprocessing.SemLock``, what
multiprocessing's locks are made of) opened on the same POSIX name where the interpreter
has it: it tries the semaphore before giving up the GIL and keeps a timed wait's deadline
across signals, which makes a timed acquire about half again as fast as posix_ipc's.
Without it, posix_ipc does the waits as well.
"""

from polysync.backends.posix.backend import PosixBackend as PosixBackend
from polysync.backends.posix.names import posix_name as posix_name
