/* Locks that a dead holder cannot wedge: one atomic word of shared memory per lock.
 *
 * The word holds the holder's process identity (its PID and start time, as
 * polysync.derived.liveness packs them), or 0 when the lock is free. Taking the lock is
 * one compare-and-swap of 0 to this process's identity, and giving it back one atomic
 * exchange to 0, so at every instant the word names the process that holds the lock:
 * there is no moment, however a process dies, at which the lock is held and nobody is
 * recorded (the window a semaphore plus a separate record has). A blocked acquirer
 * sleeps on a futex and, every SLICE seconds, checks that the recorded holder still
 * lives; if it died, one compare-and-swap of the dead identity to its own hands the lock
 * over (two waiters cannot both win it). This is the robust-futex idea of pthread robust
 * mutexes, except that the kernel is not told who holds what: the holder's identity is
 * in the word itself, which is what lets any process release a plain Lock, as
 * multiprocessing allows.
 *
 * Layout, in 64-bit cells from the index given (the cells of a polysync block):
 *   +0 holder identity (0: free)     +1 wake sequence (its first 32 bits are the futex)
 *   +2 number of blocked acquirers   +3 fencing counter (one per acquisition)
 *   +4 owner thread (RLock)          +5 recursion depth (RLock)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PID_BITS 23
#define PID_MASK ((INT64_C(1) << PID_BITS) - 1)
#define CELLS 6
/* Seconds a blocked acquirer sleeps between checks that the holder lives. */
#define SLICE 0.1

enum { W_HOLDER = 0, W_SEQ = 1, W_WAITERS = 2, W_FENCE = 3, W_TID = 4, W_DEPTH = 5 };
enum { NOT_TAKEN = 0, TAKEN = 1, TAKEN_OVER = 2, FAILED = -1 };

static int64_t own_identity;
static PyObject *closed_error; /* polysync.errors.ClosedError */

/* ---- process identities (the same packing as polysync.derived.liveness) ---- */

/* Start time of pid in clock ticks; 0 where unknown; -1 if it is gone or a zombie. */
static int64_t
start_time_of(pid_t pid)
{
    char path[48];
    char buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return access("/proc/self", F_OK) == 0 ? -1 : 0;
        }
        return 0;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return n == 0 ? -1 : 0;
    }
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL) {
        return 0;
    }
    p++;
    /* After the command: field 3 (state) ... field 22 (starttime). */
    int field = 2;
    char *state = NULL;
    while (*p != '\0') {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        field++;
        if (field == 3) {
            state = p;
        }
        if (field == 22) {
            if (state != NULL && (*state == 'Z' || *state == 'X')) {
                return -1;
            }
            return strtoll(p, NULL, 10);
        }
        while (*p != '\0' && *p != ' ') {
            p++;
        }
    }
    return 0;
}

static int64_t
identity_of_this_process(void)
{
    pid_t pid = getpid();
    int64_t started = start_time_of(pid);
    return (int64_t)pid | ((started > 0 ? started : 0) << PID_BITS);
}

static void
after_fork_in_child(void)
{
    own_identity = identity_of_this_process();
}

/* Whether the process behind identity ident still runs (unknown counts as alive). */
static int
is_alive(int64_t ident)
{
    pid_t pid = (pid_t)(ident & PID_MASK);
    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return 0;
    }
    int64_t started = start_time_of(pid);
    if (started < 0) {
        return 0;
    }
    int64_t recorded = ident >> PID_BITS;
    return !(recorded && started && started != recorded);
}

/* ---- futex ---- */

static long
futex_wait(uint32_t *addr, uint32_t expected, const struct timespec *relative)
{
    return syscall(SYS_futex, addr, FUTEX_WAIT, expected, relative, NULL, 0);
}

static void
futex_wake(uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The length of the next sleep: SLICE, or what is left before the deadline (timeout < 0:
 * none); 0 or less once the deadline has passed. */
static double
next_slice(double timeout, double deadline)
{
    if (timeout < 0) {
        return SLICE;
    }
    double remaining = deadline - monotonic();
    return remaining < SLICE ? remaining : SLICE;
}

/* Sleep on the futex at seq while it reads seen, for at most step seconds, with the GIL
 * released; 1 if the whole slice went by (nobody woke us), 0 if woken or interrupted. */
static int
sleep_slice(uint32_t *seq, uint32_t seen, double step)
{
    struct timespec relative;
    relative.tv_sec = (time_t)step;
    relative.tv_nsec = (long)((step - (double)relative.tv_sec) * 1e9);
    long rc;
    int err;
    Py_BEGIN_ALLOW_THREADS
    rc = futex_wait(seq, seen, &relative);
    err = errno;
    Py_END_ALLOW_THREADS
    return rc != 0 && err == ETIMEDOUT;
}

/* ---- what a lock handle and a semaphore handle share ---- */

typedef struct Word Word;
/* A type's acquire (timeout < 0: forever), behind the entry points both types share. */
typedef PyObject *(*acquire_fn)(Word *self, int blocking, double timeout);

#define WORD_HEAD                                                                         \
    PyObject_HEAD                                                                         \
    Py_buffer view;                                                                       \
    int64_t *w;           /* NULL once detached */                                        \
    acquire_fn acquire;                                                                   \
    const char *what;     /* "lock" or "semaphore", for messages */                       \
    int owner_died;                                                                       \
    int64_t token;        /* of this handle's latest acquisition; 0: none yet */          \
    int64_t dead_pid;     /* of the process taken over from, for the warning */

struct Word {
    WORD_HEAD
};

static int
check_open(Word *self)
{
    if (self->w == NULL) {
        PyErr_Format(closed_error ? closed_error : PyExc_RuntimeError,
                     "this %s's handle is closed", self->what);
        return -1;
    }
    return 0;
}

/* Map the handle onto ncells cells of the buffer cells from index; -1 with an error. */
static int
word_attach(Word *self, PyObject *cells, Py_ssize_t index, int ncells, const char *type_name,
            acquire_fn acquire, const char *what)
{
    if (self->w != NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s.__init__ called twice", type_name);
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(cells, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    if (index < 0 || (index + ncells) * 8 > view.len || ((uintptr_t)view.buf % 8) != 0) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a %s needs %d aligned 64-bit cells from index %zd",
                     type_name, ncells, index);
        return -1;
    }
    self->view = view;
    self->w = (int64_t *)view.buf + index;
    self->acquire = acquire;
    self->what = what;
    self->owner_died = 0;
    self->token = 0;
    self->dead_pid = 0;
    return 0;
}

static int
parse_timeout(PyObject *arg, double *timeout)
{
    if (arg == Py_None) {
        *timeout = -1.0;
        return 0;
    }
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *timeout = t < 0 ? 0.0 : t;
    return 0;
}

/* acquire(blocking, timeout) */
static PyObject *
Word_acquire(Word *self, PyObject *const *args, Py_ssize_t nargs)
{
    int blocking = 1;
    double timeout = -1.0;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    if (nargs >= 1 && (blocking = PyObject_IsTrue(args[0])) < 0) {
        return NULL;
    }
    if (nargs == 2 && parse_timeout(args[1], &timeout) < 0) {
        return NULL;
    }
    return self->acquire(self, blocking, timeout);
}

static PyObject *
Word_acquire_forever(Word *self, PyObject *Py_UNUSED(ignored))
{
    return self->acquire(self, 1, -1.0);
}

static PyObject *
Word_acquire_within(Word *self, PyObject *arg)
{
    double timeout;
    if (parse_timeout(arg, &timeout) < 0) {
        return NULL;
    }
    return self->acquire(self, 1, timeout);
}

/* _detach(): let go of the shared memory (it must be unmapped after this). */
static PyObject *
Word_detach(Word *self, PyObject *Py_UNUSED(ignored))
{
    if (self->w != NULL) {
        self->w = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_RETURN_NONE;
}

static void
Word_dealloc(Word *self)
{
    if (self->w != NULL) {
        self->w = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Word_get_owner_died(Word *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->owner_died);
}

static PyObject *
Word_get_fencing_token(Word *self, void *Py_UNUSED(closure))
{
    if (self->token == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong((long long)self->token);
}

#define WORD_METHODS                                                                      \
    {"acquire", (PyCFunction)(void (*)(void))Word_acquire, METH_FASTCALL,                 \
     "acquire(blocking, timeout) -> bool"},                                               \
        {"acquire_forever", (PyCFunction)Word_acquire_forever, METH_NOARGS,               \
         "Wait as long as it takes; True."},                                              \
        {"acquire_within", (PyCFunction)Word_acquire_within, METH_O,                      \
         "acquire_within(timeout) -> bool"},                                              \
        {"_detach", (PyCFunction)Word_detach, METH_NOARGS, NULL}

static PyGetSetDef Word_getset[] = {
    {"owner_died", (getter)Word_get_owner_died, NULL,
     "Whether this handle took over what a dead process held (until it releases).", NULL},
    {"fencing_token", (getter)Word_get_fencing_token, NULL,
     "The fencing token of this handle's latest acquisition, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- the lock ---- */

typedef struct {
    WORD_HEAD
    int recursive;
} WordLock;

static inline uint32_t *
seq_of(int64_t *w)
{
    return (uint32_t *)&w[W_SEQ];
}

static inline int64_t
this_thread(void)
{
    return (int64_t)PyThread_get_thread_ident();
}

static inline int
try_take(int64_t *w)
{
    int64_t expected = 0;
    return __atomic_compare_exchange_n(&w[W_HOLDER], &expected, own_identity, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static inline void
took(WordLock *self)
{
    int64_t *w = self->w;
    if (self->recursive) {
        w[W_TID] = this_thread();
        w[W_DEPTH] = 1;
    }
    self->token = __atomic_add_fetch(&w[W_FENCE], 1, __ATOMIC_SEQ_CST);
}

static inline void
wake_one(int64_t *w)
{
    if (__atomic_load_n(&w[W_WAITERS], __ATOMIC_SEQ_CST) > 0) {
        __atomic_add_fetch(seq_of(w), 1, __ATOMIC_SEQ_CST);
        futex_wake(seq_of(w), 1);
    }
}

/* Take the lock at w over if its recorded holder is dead; *dead gets the holder's PID. */
static int
lock_take_over(int64_t *w, int64_t *dead)
{
    int64_t holder = __atomic_load_n(&w[W_HOLDER], __ATOMIC_SEQ_CST);
    if (holder == 0 || holder == own_identity || is_alive(holder)) {
        return NOT_TAKEN;
    }
    if (!__atomic_compare_exchange_n(&w[W_HOLDER], &holder, own_identity, 0, __ATOMIC_SEQ_CST,
                                     __ATOMIC_RELAXED)) {
        return NOT_TAKEN;
    }
    *dead = holder & PID_MASK;
    return TAKEN_OVER;
}

/* Block until the lock at w is taken, taken over, timed out (timeout < 0: never) or a
 * signal handler raised (FAILED, with the exception set). Called with the GIL held. */
static int
lock_wait(int64_t *w, double timeout, int64_t *dead)
{
    uint32_t *seq = seq_of(w);
    double deadline = timeout < 0 ? 0.0 : monotonic() + timeout;
    int result = NOT_TAKEN;
    __atomic_add_fetch(&w[W_WAITERS], 1, __ATOMIC_SEQ_CST);
    for (;;) {
        uint32_t seen = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
        if (try_take(w)) {
            result = TAKEN;
            break;
        }
        double step = next_slice(timeout, deadline);
        if (step <= 0) {
            result = lock_take_over(w, dead);
            break;
        }
        int slice_ran_out = sleep_slice(seq, seen, step);
        /* A signal may have reached another thread (its handler runs in the main thread,
         * which may be this one, blocked here): run the handlers at every wake-up. */
        if (PyErr_CheckSignals() < 0) {
            result = FAILED;
            break;
        }
        if (!slice_ran_out) {
            continue; /* woken, or the sequence moved on: try again */
        }
        /* A slice went by; the holder may have died. */
        result = lock_take_over(w, dead);
        if (result != NOT_TAKEN) {
            break;
        }
    }
    __atomic_sub_fetch(&w[W_WAITERS], 1, __ATOMIC_SEQ_CST);
    if (result == NOT_TAKEN || result == FAILED) {
        /* A wake meant for the next acquirer may have reached this one: pass it on. */
        if (__atomic_load_n(&w[W_HOLDER], __ATOMIC_SEQ_CST) == 0) {
            wake_one(w);
        }
    }
    return result;
}

/* Free the lock at w (it is held) and wake one blocked acquirer. */
static inline void
lock_give(int64_t *w)
{
    __atomic_store_n(&w[W_HOLDER], 0, __ATOMIC_SEQ_CST);
    wake_one(w);
}

/* Tell the user about a takeover: the Python subclass's _owner_died(pid) warns. */
static int
report_takeover(WordLock *self)
{
    PyObject *r = PyObject_CallMethod((PyObject *)self, "_owner_died", "L",
                                      (long long)self->dead_pid);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The lock's acquire (its acquire_fn); timeout < 0 waits forever. */
static PyObject *
lock_acquire(Word *base, int blocking, double timeout)
{
    WordLock *self = (WordLock *)base;
    if (check_open(base) < 0) {
        return NULL;
    }
    int64_t *w = self->w;
    if (self->recursive && w[W_HOLDER] == own_identity && w[W_TID] == this_thread()) {
        w[W_DEPTH] += 1;
        Py_RETURN_TRUE;
    }
    if (try_take(w)) {
        took(self);
        Py_RETURN_TRUE;
    }
    int64_t dead = 0;
    int result;
    if (!blocking || timeout == 0.0) {
        result = lock_take_over(w, &dead);
    }
    else {
        result = lock_wait(w, timeout, &dead);
    }
    if (result == FAILED) {
        return NULL;
    }
    if (result == NOT_TAKEN) {
        Py_RETURN_FALSE;
    }
    took(self);
    if (result == TAKEN_OVER) {
        self->owner_died = 1;
        self->dead_pid = dead;
        if (report_takeover(self) < 0) {
            return NULL;
        }
    }
    Py_RETURN_TRUE;
}

static PyObject *
refuse(WordLock *self)
{
    PyErr_SetString(PyExc_ValueError, self->recursive
                                          ? "cannot release an RLock this thread does not own"
                                          : "cannot release an unlocked Lock");
    return NULL;
}

/* Gives the lock up completely; 0, or -1 with ValueError if this caller may not. */
static int
give_up(WordLock *self)
{
    int64_t *w = self->w;
    if (self->recursive) {
        w[W_TID] = 0;
        w[W_DEPTH] = 0;
        self->owner_died = 0;
        __atomic_store_n(&w[W_HOLDER], 0, __ATOMIC_SEQ_CST);
    }
    else {
        if (__atomic_exchange_n(&w[W_HOLDER], 0, __ATOMIC_SEQ_CST) == 0) {
            refuse(self);
            return -1;
        }
        self->owner_died = 0;
    }
    wake_one(w);
    return 0;
}

static inline int
owned_here(WordLock *self)
{
    int64_t *w = self->w;
    return w[W_HOLDER] == own_identity && w[W_TID] == this_thread();
}

static PyObject *
WordLock_release(WordLock *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    if (self->recursive) {
        if (!owned_here(self)) {
            return refuse(self);
        }
        if (--self->w[W_DEPTH] > 0) {
            Py_RETURN_NONE;
        }
    }
    if (give_up(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* release_save() -> the recursion depth (RLock) or None (Lock), for Condition.wait */
static PyObject *
WordLock_release_save(WordLock *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    if (self->recursive) {
        if (!owned_here(self)) {
            return refuse(self);
        }
        long long depth = (long long)self->w[W_DEPTH];
        if (give_up(self) < 0) {
            return NULL;
        }
        return PyLong_FromLongLong(depth);
    }
    if (give_up(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
WordLock_acquire_restore(WordLock *self, PyObject *state)
{
    PyObject *r = lock_acquire((Word *)self, 1, -1.0);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    if (self->recursive && state != Py_None) {
        long long depth = PyLong_AsLongLong(state);
        if (depth == -1 && PyErr_Occurred()) {
            return NULL;
        }
        self->w[W_DEPTH] = depth;
    }
    Py_RETURN_NONE;
}

static PyObject *
WordLock_locked(WordLock *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(__atomic_load_n(&self->w[W_HOLDER], __ATOMIC_SEQ_CST) != 0);
}

static PyObject *
WordLock_is_owned(WordLock *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    if (self->recursive) {
        return PyBool_FromLong(owned_here(self));
    }
    return PyBool_FromLong(self->w[W_HOLDER] != 0);
}

static PyObject *
WordLock_recursion_level(WordLock *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(owned_here(self) ? (long long)self->w[W_DEPTH] : 0);
}

/* _state() -> (holder identity, owner thread, fencing counter, blocked acquirers) */
static PyObject *
WordLock_state(WordLock *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    int64_t *w = self->w;
    return Py_BuildValue("(LLLL)", (long long)__atomic_load_n(&w[W_HOLDER], __ATOMIC_SEQ_CST),
                         (long long)w[W_TID], (long long)w[W_FENCE], (long long)w[W_WAITERS]);
}

static int
WordLock_init(WordLock *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"cells", "index", "recursive", NULL};
    PyObject *cells;
    Py_ssize_t index;
    int recursive = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|p", keywords, &cells, &index,
                                     &recursive)) {
        return -1;
    }
    if (word_attach((Word *)self, cells, index, CELLS, "WordLock", lock_acquire, "lock") < 0) {
        return -1;
    }
    self->recursive = recursive;
    return 0;
}

static PyMethodDef WordLock_methods[] = {
    WORD_METHODS,
    {"release", (PyCFunction)WordLock_release, METH_NOARGS,
     "Give the lock back; ValueError if this caller may not."},
    {"release_save", (PyCFunction)WordLock_release_save, METH_NOARGS, NULL},
    {"acquire_restore", (PyCFunction)WordLock_acquire_restore, METH_O, NULL},
    {"locked", (PyCFunction)WordLock_locked, METH_NOARGS, NULL},
    {"is_owned", (PyCFunction)WordLock_is_owned, METH_NOARGS, NULL},
    {"recursion_level", (PyCFunction)WordLock_recursion_level, METH_NOARGS, NULL},
    {"_state", (PyCFunction)WordLock_state, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WordLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "polysync.backends.posix._wordlock.WordLock",
    .tp_basicsize = sizeof(WordLock),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "WordLock(cells, index, recursive=False): a lock in six shared 64-bit cells.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)WordLock_init,
    .tp_dealloc = (destructor)Word_dealloc,
    .tp_methods = WordLock_methods,
    .tp_getset = Word_getset,
};

/* ---- the semaphore ----
 *
 * A counting semaphore whose permits a dead process gives back. Its state sits behind an
 * internal word lock (the mutex, cells +0..+5), so a holder of the mutex that dies is
 * taken over like any lock's; and every change that spans several cells is written to a
 * journal first, so whoever takes the mutex over finishes it: no death leaves the
 * count half-updated. Each process that takes permits has a slot (its identity, its
 * permits taken minus given back); a slot whose process is dead returns its permits.
 * A process that closes its handle normally keeps what the handle took (it consumed
 * them, as a signal's consumer does), as on redis.
 *
 *   +6 value  +7 bound (0: none)  +8 wake sequence  +9 blocked acquirers  +10 fencing
 *   +11 journal slot (slot index + 1, 0: none)  +12 value after  +13 held after
 *   +14 identity after  +15 reserved  +16.. SLOTS slots of (identity, held)
 */
#define SLOTS 32
#define S_VALUE 6
#define S_BOUND 7
#define S_SEQ 8
#define S_WAITERS 9
#define S_FENCE 10
#define S_JOURNAL 11
#define S_J_VALUE 12
#define S_J_HELD 13
#define S_J_IDENT 14
#define S_SLOTS 16
#define SEM_CELLS (S_SLOTS + 2 * SLOTS)
#define MAX_VALUE INT64_C(2147483647)

typedef struct {
    WORD_HEAD
    int64_t taken;    /* permits this handle took and has not given back */
    int64_t taken_by; /* the identity that took them (a forked child starts afresh) */
} WordSemaphore;

static inline void
put(int64_t *cell, int64_t value)
{
    __atomic_store_n(cell, value, __ATOMIC_SEQ_CST);
}

static inline int64_t
get(int64_t *cell)
{
    return __atomic_load_n(cell, __ATOMIC_SEQ_CST);
}

/* Set the value and one slot together: journal first, so a takeover can finish it. */
static void
apply(int64_t *w, int slot, int64_t value, int64_t held, int64_t ident)
{
    if (slot < 0) {
        put(&w[S_VALUE], value);
        return;
    }
    put(&w[S_J_VALUE], value);
    put(&w[S_J_HELD], held);
    put(&w[S_J_IDENT], ident);
    put(&w[S_JOURNAL], slot + 1);
    put(&w[S_VALUE], value);
    put(&w[S_SLOTS + 2 * slot + 1], held);
    put(&w[S_SLOTS + 2 * slot], ident);
    put(&w[S_JOURNAL], 0);
}

/* Finish what a dead holder of the mutex left half-written. */
static void
repair(int64_t *w)
{
    int64_t journal = get(&w[S_JOURNAL]);
    if (journal > 0 && journal <= SLOTS) {
        int slot = (int)journal - 1;
        put(&w[S_VALUE], get(&w[S_J_VALUE]));
        put(&w[S_SLOTS + 2 * slot + 1], get(&w[S_J_HELD]));
        put(&w[S_SLOTS + 2 * slot], get(&w[S_J_IDENT]));
    }
    put(&w[S_JOURNAL], 0);
}

/* Take the semaphore's mutex (waiting as long as it takes); -1 if a signal handler raised. */
static int
mutex_lock(int64_t *w)
{
    if (try_take(w)) {
        return 0;
    }
    int64_t dead = 0;
    int r = lock_wait(w, -1.0, &dead);
    if (r == FAILED) {
        return -1;
    }
    if (r == TAKEN_OVER) {
        repair(w);
    }
    return 0;
}

static int
find_slot(int64_t *w, int64_t ident)
{
    for (int i = 0; i < SLOTS; i++) {
        if (get(&w[S_SLOTS + 2 * i]) == ident) {
            return i;
        }
    }
    return -1;
}

/* Give back the permits of slots whose process died; the number given back. Slots that
 * hold no permit are only freed when every_slot is set (a liveness check each costs). */
static int64_t
reclaim(int64_t *w, int every_slot, int64_t *dead)
{
    int64_t returned = 0;
    for (int i = 0; i < SLOTS; i++) {
        int64_t ident = get(&w[S_SLOTS + 2 * i]);
        if (ident == 0 || ident == own_identity) {
            continue;
        }
        int64_t held = get(&w[S_SLOTS + 2 * i + 1]);
        if ((held <= 0 && !every_slot) || is_alive(ident)) {
            continue;
        }
        int64_t back = held > 0 ? held : 0;
        apply(w, i, get(&w[S_VALUE]) + back, 0, 0);
        if (back > 0) {
            returned += back;
            *dead = ident & PID_MASK;
        }
    }
    return returned;
}

/* This process's slot, made if need be (-1: all taken by live processes: unaccounted). */
static int
own_slot(int64_t *w, int64_t *returned, int64_t *dead)
{
    int slot = find_slot(w, own_identity);
    if (slot >= 0) {
        return slot;
    }
    slot = find_slot(w, 0);
    if (slot < 0) {
        *returned += reclaim(w, 1, dead);
        slot = find_slot(w, 0);
    }
    return slot;
}

static void
wake_sem(int64_t *w, int64_t n)
{
    if (get(&w[S_WAITERS]) > 0) {
        uint32_t *seq = (uint32_t *)&w[S_SEQ];
        __atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
        futex_wake(seq, n > INT32_MAX ? INT32_MAX : (int)n);
    }
}

/* Take one permit under the mutex if there is one (first giving back a dead process's
 * permits when none is left and check_dead is set: it costs a liveness check per slot,
 * so a waiter does it once per call and once per slice, not at every wake); 1 taken. */
static int
take_permit(WordSemaphore *self, int check_dead, int64_t *returned, int64_t *dead)
{
    int64_t *w = self->w;
    if (get(&w[S_VALUE]) <= 0) {
        if (!check_dead) {
            return 0;
        }
        *returned += reclaim(w, 0, dead);
        if (get(&w[S_VALUE]) <= 0) {
            return 0;
        }
    }
    int slot = own_slot(w, returned, dead);
    int64_t held = slot >= 0 ? get(&w[S_SLOTS + 2 * slot + 1]) : 0;
    apply(w, slot, get(&w[S_VALUE]) - 1, held + 1, own_identity);
    if (self->taken_by != own_identity) {
        self->taken_by = own_identity;
        self->taken = 0;
    }
    self->taken += 1;
    self->token = __atomic_add_fetch(&w[S_FENCE], 1, __ATOMIC_SEQ_CST);
    return 1;
}

/* The semaphore's acquire (its acquire_fn); timeout < 0 waits forever. */
static PyObject *
sem_acquire(Word *base, int blocking, double timeout)
{
    WordSemaphore *self = (WordSemaphore *)base;
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    int64_t *w = self->w;
    uint32_t *seq = (uint32_t *)&w[S_SEQ];
    double deadline = timeout < 0 ? 0.0 : monotonic() + timeout;
    int64_t returned = 0, dead = 0;
    int got = 0, check_dead = 1;
    if (mutex_lock(w) < 0) {
        return NULL;
    }
    for (;;) {
        got = take_permit(self, check_dead, &returned, &dead);
        if (got || !blocking || timeout == 0.0) {
            break;
        }
        double step = next_slice(timeout, deadline);
        if (step <= 0) {
            if (!check_dead) { /* a last look for a dead process's permits */
                got = take_permit(self, 1, &returned, &dead);
            }
            break;
        }
        __atomic_add_fetch(&w[S_WAITERS], 1, __ATOMIC_SEQ_CST);
        uint32_t seen = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
        lock_give(w);
        check_dead = sleep_slice(seq, seen, step); /* a slice went by with no release */
        __atomic_sub_fetch(&w[S_WAITERS], 1, __ATOMIC_SEQ_CST);
        if (PyErr_CheckSignals() < 0) {
            if (get(&w[S_VALUE]) > 0) {
                wake_sem(w, 1); /* a wake meant for another waiter may have come here */
            }
            return NULL;
        }
        if (mutex_lock(w) < 0) {
            return NULL;
        }
    }
    int64_t left = get(&w[S_VALUE]);
    lock_give(w);
    if (returned > 0 && left > 0) {
        wake_sem(w, returned); /* the dead process's permits are there for the others too */
    }
    if (!got) {
        if (left > 0) {
            wake_sem(w, 1);
        }
        Py_RETURN_FALSE;
    }
    if (returned > 0) {
        self->owner_died = 1;
        self->dead_pid = dead;
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_owner_died", "LL",
                                          (long long)dead, (long long)returned);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_RETURN_TRUE;
}

/* release(n=1): add n permits; NotHeldError past a bound, ValueError past MAX_VALUE. */
static PyObject *
WordSemaphore_release(WordSemaphore *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long n = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "release() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1) {
        n = PyLong_AsLongLong(args[0]);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (n < 1) {
            PyErr_Format(PyExc_ValueError, "n must be >= 1, not %lld", n);
            return NULL;
        }
    }
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    int64_t *w = self->w;
    if (mutex_lock(w) < 0) {
        return NULL;
    }
    int64_t value = get(&w[S_VALUE]);
    int64_t bound = get(&w[S_BOUND]);
    if ((bound > 0 && value + n > bound) || value + n > MAX_VALUE) {
        lock_give(w);
        return PyObject_CallMethod((PyObject *)self, "_refuse_release", "LL", n,
                                   (long long)value);
    }
    int slot = find_slot(w, own_identity);
    int64_t held = slot >= 0 ? get(&w[S_SLOTS + 2 * slot + 1]) : 0;
    apply(w, slot, value + n, held - n, own_identity);
    lock_give(w);
    if (self->taken_by == own_identity) {
        self->taken = self->taken > n ? self->taken - n : 0;
    }
    self->owner_died = 0;
    wake_sem(w, n);
    Py_RETURN_NONE;
}

static PyObject *
WordSemaphore_get_value(WordSemaphore *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)get(&self->w[S_VALUE]));
}

/* _state() -> (value, blocked acquirers, fencing counter) */
static PyObject *
WordSemaphore_state(WordSemaphore *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open((Word *)self) < 0) {
        return NULL;
    }
    int64_t *w = self->w;
    return Py_BuildValue("(LLL)", (long long)get(&w[S_VALUE]), (long long)get(&w[S_WAITERS]),
                         (long long)get(&w[S_FENCE]));
}

/* _forget(): the permits this handle took count as consumed, never given back at death.
 * Waits for the mutex at most 1 s (a GC finalizer calls it): False if it could not. */
static PyObject *
WordSemaphore_forget(WordSemaphore *self, PyObject *Py_UNUSED(ignored))
{
    int64_t *w = self->w;
    if (w == NULL || self->taken == 0 || self->taken_by != own_identity) {
        Py_RETURN_TRUE;
    }
    int64_t dead = 0;
    int r = try_take(w) ? TAKEN : lock_wait(w, 1.0, &dead);
    if (r == FAILED) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    if (r == NOT_TAKEN) {
        Py_RETURN_FALSE;
    }
    if (r == TAKEN_OVER) {
        repair(w);
    }
    int slot = find_slot(w, own_identity);
    if (slot >= 0) {
        int64_t held = get(&w[S_SLOTS + 2 * slot + 1]);
        apply(w, slot, get(&w[S_VALUE]), held - self->taken, own_identity);
    }
    self->taken = 0;
    lock_give(w);
    Py_RETURN_TRUE;
}

/* WordSemaphore(cells, index): its creator wrote the value and bound (cells +6, +7)
 * before the block was marked ready. */
static int
WordSemaphore_init(WordSemaphore *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"cells", "index", NULL};
    PyObject *cells;
    Py_ssize_t index;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", keywords, &cells, &index)) {
        return -1;
    }
    if (word_attach((Word *)self, cells, index, SEM_CELLS, "WordSemaphore", sem_acquire,
                    "semaphore") < 0) {
        return -1;
    }
    self->taken = 0;
    self->taken_by = own_identity;
    return 0;
}

static PyMethodDef WordSemaphore_methods[] = {
    WORD_METHODS,
    {"release", (PyCFunction)(void (*)(void))WordSemaphore_release, METH_FASTCALL,
     "release(n=1)"},
    {"get_value", (PyCFunction)WordSemaphore_get_value, METH_NOARGS, NULL},
    {"_state", (PyCFunction)WordSemaphore_state, METH_NOARGS, NULL},
    {"_forget", (PyCFunction)WordSemaphore_forget, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WordSemaphoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "polysync.backends.posix._wordlock.WordSemaphore",
    .tp_basicsize = sizeof(WordSemaphore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "WordSemaphore(cells, index): a semaphore whose dead holders give permits back.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)WordSemaphore_init,
    .tp_dealloc = (destructor)Word_dealloc,
    .tp_methods = WordSemaphore_methods,
    .tp_getset = Word_getset,
};

static PyObject *
module_identity(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong((long long)own_identity);
}

static PyMethodDef module_methods[] = {
    {"identity", module_identity, METH_NOARGS,
     "This process's identity as the lock word records it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "polysync.backends.posix._wordlock",
    .m_doc = "Locks in one atomic word of shared memory, which a dead holder cannot wedge.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__wordlock(void)
{
    own_identity = identity_of_this_process();
    if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *errors = PyImport_ImportModule("polysync.errors");
    if (errors == NULL) {
        return NULL;
    }
    closed_error = PyObject_GetAttrString(errors, "ClosedError");
    Py_DECREF(errors);
    if (closed_error == NULL) {
        return NULL;
    }
    if (PyType_Ready(&WordLockType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&WordLockType);
    if (PyModule_AddObject(module, "WordLock", (PyObject *)&WordLockType) < 0) {
        Py_DECREF(&WordLockType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyType_Ready(&WordSemaphoreType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&WordSemaphoreType);
    if (PyModule_AddObject(module, "WordSemaphore", (PyObject *)&WordSemaphoreType) < 0) {
        Py_DECREF(&WordSemaphoreType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "SEMAPHORE_CELLS", SEM_CELLS) < 0 ||
        PyModule_AddIntConstant(module, "SEMAPHORE_VALUE", S_VALUE) < 0 ||
        PyModule_AddIntConstant(module, "SEMAPHORE_BOUND", S_BOUND) < 0 ||
        PyModule_AddIntConstant(module, "MAX_VALUE", (long)MAX_VALUE) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "CELLS", CELLS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
