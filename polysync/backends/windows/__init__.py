"""The windows backend: kernel32 semaphores, mutexes, events and file mappings, through ctypes.

Kernels (see ``docs/windows.md``):

* the counting semaphore every backend supplies: a kernel semaphore (maximum 2**31-1);
* shared cells: a file mapping backed by the paging file, viewed as signed 64-bit ints;
* native primitives: Lock = a semaphore of maximum 1 (anyone may release it, as with
  multiprocessing) with its holder and fence on record under a guard mutex, so a holder
  that dies is taken over; RLock = a kernel mutex (reentrant, owned by a thread, and
  ``WAIT_ABANDONED`` reports an owner that died); Semaphore = a semaphore taken with a
  guard mutex that orders its fence; BoundedSemaphore = the same, its semaphore's
  maximum its initial value; Event = a manual-reset event. Condition and Barrier are the
  generic derived ones (:mod:`polysync.derived`). Each native primitive also has a small
  header mapping (made by :func:`polysync.derived.open_block`) that records its kind, so
  opening a name as another kind raises :class:`~polysync.KindMismatchError`.

Every blocking wait is a loop of ``WaitForSingleObject`` (or ``WaitForMultipleObjects``)
slices of at most 50 ms, so
Ctrl-C in the main thread interrupts it promptly and leaves the count unchanged.

Names: an object name maps injectively to ``Local\\polysync-...`` (or ``Global\\``):
``n-<name>`` for a user name made of ``[A-Za-z0-9_.-]`` that fits, ``h-<sha256>``
otherwise, ``a-``/``w-`` for the names polysync generates. Windows destroys a named
object with its last handle, so to give named objects polysync's lifetime ("until
unlinked") each process keeps one extra handle to every named object it opened until it
unlinks it or exits, and each named object carries a generation: its kernel name ends in
``~<generation>``, read from a small directory mapping (``polysync-d-...``) that every
handle also holds open. ``unlink()`` advances the generation, so later opens of the name
make a fresh object while handles already open keep working on the old one, as on posix.
"""

from polysync.backends.windows.backend import WindowsBackend as WindowsBackend
from polysync.backends.windows.names import MAX_PATH as MAX_PATH
from polysync.backends.windows.names import windows_name as windows_name
from polysync.backends.windows.objects import _exists as _exists
