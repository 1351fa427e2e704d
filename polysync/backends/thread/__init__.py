"""The thread backend: the in-process reference backend, for unit tests and single processes.

Its kernels are ``threading`` objects kept in a process-wide table, so every primitive is
derived through exactly the same code as on a cross-process backend. Named objects are
shared by the threads of one process; nothing crosses a process boundary.
"""

from polysync.backends.thread.backend import ThreadBackend as ThreadBackend
from polysync.backends.thread.kernels import ThreadCells as ThreadCells
from polysync.backends.thread.kernels import ThreadSemaphore as ThreadSemaphore
