# cython: language_level=3
"""The invoke fast path of libadsprpc_compat, and the registered-buffer table it consults.

:class:`RegTable` holds the process's registered ranges (rpcmem allocations and
``remote_register_buf`` calls) as a sorted C array; :class:`Invoker` turns a caller's argument
sequence into the 24-byte ``fastrpc_invoke_args`` descriptors in a C buffer it owns and calls a
driver's raw ``ioctl(request, header)``. It returns the AEE code, like the C library; the
errno of a failed ioctl and where the code came from are kept in C thread-locals
(:func:`last_errno`, :func:`last_origin`), the way libc keeps ``errno``.

On the fast path (one thread per session at a time, registered buffers already translated)
nothing is allocated: the header is a bytearray the invoker owns, buffers are read through the
buffer protocol, and the descriptors live in a C buffer owned by the invoker. While the ioctl
runs, the copied buffers (those the caller's exporters vouch for) and the descriptors are
pinned as known-valid on the calling thread, so the driver copies them with ``memcpy``
(``qda_core._marshal``, whose copy of csrc/uaccess.c the driver uses).
"""
cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New, PyCapsule_GetContext, PyCapsule_SetContext
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.ref cimport PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_GET_ITEM
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, realloc
from libc.string cimport memset

from qda_core._atomic cimport qda_inc_long, qda_load_long, qda_load_ull, qda_spin_lock, qda_spin_unlock, qda_store_ull
from qda_core._cdev cimport Epoch, Switch
from qda_core._cwire cimport sc_length
from qda_core._engine cimport ROUTE_ARGS_KEPT, ROUTE_DECLINED, EngineRoute, FileLane

cdef extern from *:
    const char *QDARPC_VERSION

cdef extern from *:
    """
    static __thread int qda_compat_errno;
    static __thread int qda_compat_origin;
    """
    int qda_compat_errno
    int qda_compat_origin

cdef extern from "qdarpc/face.h":
    const char *QDARPC_FACE_CAPSULE
    enum: QDARPC_FACE_ABI
    enum: QDARPC_FACE_DECLINED
    struct qdarpc_face:
        unsigned int abi
        long long (*h64_invoke)(void *ctx, unsigned long long h, unsigned int sc,
                                unsigned long long pra) noexcept
        void *ctx
        long long (*route_invoke)(void *ctx, unsigned long long h, unsigned int sc,
                                  unsigned long long pra) noexcept nogil

cdef extern from "Python.h":
    int Py_AddPendingCall(int (*func)(void *) noexcept with gil, void *arg) nogil

cdef extern from "qdarpc/aee_err.h":
    int qda_errno_to_aee(int err)

cdef extern from "qdarpc/uaccess.h":
    struct qda_pin_api:
        size_t (*mark)()
        int (*pin)(const void *base, size_t len, int writable)
        void (*unpin)(size_t mark)
        int (*pin_view)(void *view, int writable)
        int (*vouches)(void *view)
        int (*copy_from_user)(void *dst, uint64_t uaddr, size_t len) nogil
        size_t (*begin)() nogil
        void (*end)(size_t mark) nogil

__version__ = QDARPC_VERSION.decode()

# Pins, and the copies of a C caller's remote_arg array, go to the one copy of uaccess.c (the
# marshaller's: its pins, its guarded copier).
from qda_core._ext import load as _load
from qda_core.errors import report_internal
cdef qda_pin_api *_pins = <qda_pin_api *>PyCapsule_GetPointer(_load("_marshal").PIN_API,
                                                               "qda_core._marshal.PIN_API")
#: ``qda_core.trace.RECORDER is not None``, as one C load (the switch the trace keeps with it).
cdef Switch _TRACE = _load("_cdev").TRACE
#: The routes' epoch (docs/dataplane.md "Routes").
cdef Epoch _ROUTES = _load("_cdev").ROUTES

#: Where the last code on this thread came from (:func:`last_origin`).
ORIGIN_DSP = 0
ORIGIN_HOST = 1
ORIGIN_DRIVER = 2

cdef enum:
    AEE_EBADPARM = 0x0E
    AEE_ENOMEMORY = 0x02
    PRA_STACK = 32          # remote_arg entries read into a stack buffer (more: malloc)
    MAX_ARGS = 540          # 255 + 255 + 15 + 15
    DESC_SIZE = 24


def last_errno():
    """errno of the last failed driver call made by an :class:`Invoker` on this thread (0 if
    the last code did not come from the driver)."""
    return qda_compat_errno


def last_origin():
    """Origin of the last invoke code on this thread: ORIGIN_DSP (the DSP's retval),
    ORIGIN_HOST (a check in this library) or ORIGIN_DRIVER (an ioctl errno)."""
    return qda_compat_origin


cdef class CArgs:
    """A C caller's ``remote_arg pra[]`` (its address and entry count), passed as ``args``:
    buffers are its raw ``{pv, nLen}`` pairs and handles its ``{fd, offset}`` pairs, read
    with the checked user copy (a bad ``pra`` is AEE_EBADPARM with errno EFAULT)."""
    cdef readonly uint64_t address
    cdef readonly Py_ssize_t count

    def __cinit__(self, uint64_t address, Py_ssize_t count):
        self.address = address
        self.count = count

    def __len__(self):
        return self.count

    def __repr__(self):
        return f"<CArgs {self.address:#x}[{self.count}]>"


cdef struct reg_t:
    uint64_t start
    uint64_t end
    int32_t fd
    uint32_t attr
    int64_t refs
    int32_t cache_key     # session key of the cached translation (0 = none)
    int32_t cache_ref     # what that session calls this buffer (GEM handle on accel)


cdef struct regtab_t:
    reg_t *regs                 # sorted by start; n of cap used
    Py_ssize_t n, cap
    int lock                    # held while the array moves or shifts (writers hold the GIL too)


cdef Py_ssize_t _regtab_bisect(const regtab_t *t, uint64_t addr) noexcept nogil:
    """Index of the first range with start > addr."""
    cdef Py_ssize_t lo = 0, hi = t.n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if t.regs[mid].start <= addr:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int _regtab_find(regtab_t *t, uint64_t addr, uint64_t length, reg_t **out) noexcept nogil:
    """1: [addr, addr+length) lies in a range (*out set); -1: starts in one but overruns
    every range containing addr; 0: not registered."""
    cdef Py_ssize_t i = _regtab_bisect(t, addr) - 1
    cdef int overrun = 0
    while i >= 0:
        if addr < t.regs[i].end:
            if length <= t.regs[i].end - addr:  # not addr + length: that can wrap
                out[0] = &t.regs[i]
                return 1
            overrun = 1
        i -= 1
    return -1 if overrun else 0


cdef int _regs_hit(regtab_t *t, uint64_t addr, uint64_t length) noexcept nogil:
    """:func:`_regtab_find` without the GIL, under the table's lock: non-zero when the buffer
    starts in a registered range (by reference, or overrunning it: the GIL's path answers)."""
    cdef reg_t *r
    cdef int k
    qda_spin_lock(&t.lock)
    k = _regtab_find(t, addr, length, &r)
    qda_spin_unlock(&t.lock)
    return k


cdef class RegTable:
    """Registered ranges ``[start, start+size)`` -> ``(fd, attr)``, refcounted per exact triple.

    ``find`` answers for a buffer: inside a range (by reference), starting inside but running
    past its end (an error), or unregistered (copied).
    """
    cdef regtab_t t             # (a struct: a C caller's route reads it without the GIL)

    def __cinit__(self):
        self.t.regs = NULL
        self.t.n = 0
        self.t.cap = 0
        self.t.lock = 0

    def __dealloc__(self):
        free(self.t.regs)

    def __len__(self):
        return self.t.n

    def add(self, uint64_t start, uint64_t size, int32_t fd, uint32_t attr=0):
        """Register (or add a reference to) a range; returns its reference count."""
        cdef Py_ssize_t i, j
        if size == 0:
            raise ValueError("cannot register an empty range")
        if size > <uint64_t>0xFFFFFFFFFFFFFFFF - start:
            raise ValueError(f"range {start:#x}+{size:#x} runs past the end of the address space")
        i = _regtab_bisect(&self.t, start)
        j = i - 1
        while j >= 0 and self.t.regs[j].start == start:
            if self.t.regs[j].end == start + size and self.t.regs[j].fd == fd:
                self.t.regs[j].refs += 1
                self.t.regs[j].attr = attr
                return self.t.regs[j].refs
            j -= 1
        qda_spin_lock(&self.t.lock)  # (a reader without the GIL sees the table before or after)
        try:
            if self.t.n == self.t.cap:
                newcap = self.t.cap * 2 if self.t.cap else 16
                p = <reg_t *>realloc(self.t.regs, newcap * sizeof(reg_t))
                if p == NULL:
                    raise MemoryError()
                self.t.regs = p
                self.t.cap = newcap
            for j in range(self.t.n, i, -1):
                self.t.regs[j] = self.t.regs[j - 1]
            self.t.regs[i].start = start
            self.t.regs[i].end = start + size
            self.t.regs[i].fd = fd
            self.t.regs[i].attr = attr
            self.t.regs[i].refs = 1
            self.t.regs[i].cache_key = 0
            self.t.regs[i].cache_ref = 0
            self.t.n += 1
        finally:
            qda_spin_unlock(&self.t.lock)
        return 1

    def remove(self, uint64_t start, uint64_t size):
        """Drop one reference of the registration at ``start``. Returns ``(fd, refs_left)``;
        ``(None, 0)`` if nothing is registered there; raises ValueError if the registration at
        ``start`` has another size (where the C library aborts the process)."""
        cdef Py_ssize_t i = _regtab_bisect(&self.t, start) - 1, j
        cdef int32_t fd
        cdef uint64_t other = 0
        while i >= 0 and self.t.regs[i].start == start:
            if self.t.regs[i].end - start == size:
                fd = self.t.regs[i].fd
                self.t.regs[i].refs -= 1
                if self.t.regs[i].refs > 0:
                    return fd, self.t.regs[i].refs
                qda_spin_lock(&self.t.lock)
                for j in range(i, self.t.n - 1):
                    self.t.regs[j] = self.t.regs[j + 1]
                self.t.n -= 1
                qda_spin_unlock(&self.t.lock)
                return fd, 0
            other = self.t.regs[i].end - start
            i -= 1
        if other:
            raise ValueError(f"buffer {start:#x} is registered with size {other}, not {size}")
        return None, 0

    cdef int find(self, uint64_t addr, uint64_t length, reg_t **out) noexcept:
        """1: [addr, addr+length) lies in a range (*out set); -1: starts in one but overruns
        every range containing addr; 0: not registered (:func:`_regtab_find`)."""
        return _regtab_find(&self.t, addr, length, out)

    def lookup(self, uint64_t addr, uint64_t length):
        """``(fd, attr)`` of the range holding the buffer, None if unregistered; ValueError if
        the buffer starts inside a range but runs past its end."""
        cdef reg_t *r = NULL
        cdef int k = self.find(addr, length, &r)
        if k < 0:
            raise ValueError(f"buffer {addr:#x}+{length} overruns its registered range")
        return (r.fd, r.attr) if k else None

    def ranges(self):
        """Every registration as ``(start, size, fd, attr, refs)`` (for diagnostics/tests)."""
        return [(self.t.regs[i].start, self.t.regs[i].end - self.t.regs[i].start, self.t.regs[i].fd,
                 self.t.regs[i].attr, self.t.regs[i].refs) for i in range(self.t.n)]

    def after_fork(self):
        """In a forked child: the lock free (a thread of the parent's may have held it)."""
        self.t.lock = 0

    def forget_session(self, int32_t key):
        """Drop cached translations of a session that is going away."""
        cdef Py_ssize_t i
        for i in range(self.t.n):
            if self.t.regs[i].cache_key == key:
                self.t.regs[i].cache_key = 0


cdef class Invoker:
    """Invokes on one open driver file: ``ioctl`` is its raw ioctl, ``request`` the INVOKE
    number. ``translate`` is None when the driver takes the registration's fd as is (legacy),
    else ``translate(fd) -> ref`` (accel: the GEM handle in the session file), cached per
    registration under ``key``. ``handle_slot(obj) -> (ptr, length, fd, attr)`` builds the
    descriptor of a handle argument (slow path)."""
    cdef object ioctl
    cdef object file            # the driver file of ioctl (None: not a driver file's)
    cdef FileLane lane          # its lane: the routes of its own INVOKEs (docs/dataplane.md "Routes")
    cdef unsigned long request
    cdef RegTable regs
    cdef object translate
    cdef int32_t key
    cdef object handle_slot
    cdef bytearray hdr
    cdef char *descs
    cdef Py_buffer *views
    cdef bint busy
    #: If non-zero, the next invoke fails with this code before reaching the driver (the
    #: upstream remote_set_mode quirk); cleared when used.
    cdef public uint32_t fail_next

    def __cinit__(self, ioctl, unsigned long request, RegTable regs, translate, int32_t key, handle_slot):
        import ctypes
        self.ioctl = ioctl
        self.file = getattr(ioctl, "__self__", None)
        lane = getattr(self.file, "_lane", None)
        self.lane = lane if type(lane) is FileLane else None
        self.request = request
        self.regs = regs
        self.translate = translate
        self.key = key
        self.handle_slot = handle_slot
        self.hdr = bytearray(16)
        self.descs = <char *>malloc(MAX_ARGS * DESC_SIZE)
        self.views = <Py_buffer *>malloc(MAX_ARGS * sizeof(Py_buffer))
        if self.descs == NULL or self.views == NULL:
            raise MemoryError()
        self.busy = False
        self.fail_next = 0

    def __dealloc__(self):
        free(self.descs)
        free(self.views)

    def invoke(self, uint32_t handle, sc, args):
        """Invoke ``handle`` with ``sc`` and the argument sequence ``args`` (in-buffers,
        out-buffers, in-handles, out-handles). Returns the AEE code (0 on success; DSP codes
        as their unsigned 32-bit value). OverflowError: ``sc`` is not an int in 0..2**32-1."""
        if not isinstance(sc, int):  # (a float would convert: 1.0 is not a scalars word)
            raise OverflowError(f"sc {sc!r} is not an int")
        return self.call(handle, sc, args)

    cdef object call(self, uint32_t handle, uint32_t sc, object args):
        cdef char *descs
        cdef Py_buffer *views
        cdef bint own = not self.busy
        if own:
            self.busy = True
            descs, views = self.descs, self.views
            try:
                return self._invoke(handle, sc, args, self.hdr, descs, views)
            finally:
                self.busy = False
        # Another thread is inside this invoker: use private buffers for this call.
        descs = <char *>malloc(MAX_ARGS * DESC_SIZE)
        views = <Py_buffer *>malloc(MAX_ARGS * sizeof(Py_buffer))
        try:
            if descs == NULL or views == NULL:
                raise MemoryError()
            return self._invoke(handle, sc, args, bytearray(16), descs, views)
        finally:
            free(descs)
            free(views)

    cdef uint32_t _host(self, uint32_t code) noexcept:
        global qda_compat_errno, qda_compat_origin
        qda_compat_errno = 0
        qda_compat_origin = ORIGIN_HOST
        return code

    cdef object _invoke(self, uint32_t handle, uint32_t sc, object args, bytearray hdr, char *descs,
                        Py_buffer *views):
        global qda_compat_errno, qda_compat_origin
        cdef Py_ssize_t nin = (sc >> 16) & 0xFF
        cdef Py_ssize_t nout = (sc >> 8) & 0xFF
        cdef Py_ssize_t nbufs = nin + nout
        cdef Py_ssize_t n = nbufs + ((sc >> 4) & 0xF) + (sc & 0xF)
        cdef Py_ssize_t i, held = 0, got
        cdef size_t mark
        cdef uint64_t *d
        cdef object seq, item, ret
        cdef bint vouched = self.lane is not None
        if self.fail_next:
            code = self.fail_next
            self.fail_next = 0
            return self._host(code)
        if n == 0 and self.lane is not None and (
                args is None or ((type(args) is tuple or type(args) is list) and not args)
                or (type(args) is CArgs and (<CArgs>args).count == 0)):
            # (arguments the call does not declare are the checks' below to answer)
            ret = self._routed(handle, sc, NULL, False)  # the file's route to the handle, as its INVOKE takes it
            if ret is not None:
                return self._result(ret)
        if type(args) is CArgs:
            return self._invoke_c(handle, sc, <CArgs>args, n, nbufs, hdr, descs)
        if args is None:
            if n:
                return self._host(AEE_EBADPARM)
            seq = ()
        else:
            seq = PySequence_Fast(args, "invoke arguments must be a sequence")
        got = PySequence_Fast_GET_SIZE(seq)
        if got != n:
            return self._host(AEE_EBADPARM)
        try:
            try:
                for i in range(n):
                    item = <object>PySequence_Fast_GET_ITEM(seq, i)
                    d = <uint64_t *>(descs + DESC_SIZE * i)
                    if i >= nbufs:
                        ptr, length, fd, attr = self.handle_slot(item)
                        d[0] = ptr
                        d[1] = length
                        (<int32_t *>(d + 2))[0] = fd
                        (<uint32_t *>(d + 2))[1] = attr
                        continue
                    if PyObject_GetBuffer(item, &views[i], PyBUF_SIMPLE | (PyBUF_WRITABLE if i >= nin else 0)) < 0:
                        raise TypeError
                    held = i + 1
                    d[0] = <uint64_t><size_t>views[i].buf
                    d[1] = <uint64_t>views[i].len
                    (<int32_t *>(d + 2))[0] = -1
                    (<uint32_t *>(d + 2))[1] = 0
                    if views[i].len:
                        if self.regs.t.n and self._translate(d) < 0:
                            return self._host(AEE_EBADPARM)  # starts in a registered range, overruns it
                        # (every buffer copied, not a registration's, a view whose exporter
                        # vouches for its memory: the route copies it as is)
                        if vouched and (<int32_t *>(d + 2))[0] == -1 and not _pins.vouches(&views[i]):
                            vouched = False
            except (TypeError, BufferError, ValueError, OverflowError):
                # not a contiguous buffer, a read-only out-buffer, a bad handle slot
                return self._host(AEE_EBADPARM)
            if vouched:  # every copied buffer is memory held here: the route copies it as is
                ret = self._routed(handle, sc, descs, True)
                if ret is not None:
                    return self._result(ret)
            mark = _pins.begin()
            try:
                for i in range(held):
                    # copied (not translated to a registration): the driver will memcpy it
                    if views[i].len and (<int32_t *>(<uint64_t *>(descs + DESC_SIZE * i) + 2))[0] == -1:
                        _pins.pin_view(&views[i], 1 if i >= nin else 0)
                if n:
                    _pins.pin(descs, DESC_SIZE * n, 0)
                ret = None if vouched or self.lane is None else self._routed(handle, sc, descs, False)
                if ret is None:
                    ret = self._send(handle, sc, n, hdr, descs)
            finally:
                _pins.end(mark)
        finally:
            for i in range(held):
                PyBuffer_Release(&views[i])
        return self._result(ret)

    cdef object _routed(self, uint32_t handle, uint32_t sc, const char *descs, bint held):
        """INVOKE on the file's route to ``handle``, as the driver's ioctl serves it (the file's
        reference, its record of a failure), ``descs`` its descriptors (NULL: none; they stay
        as they are during the call; ``held``: each copied buffer is a vouched view held here):
        the ioctl's result, or None when the file has no route there or the route declines."""
        cdef FileLane fl = self.lane
        cdef EngineRoute r = fl.route_to(handle)
        if r is None or not fl.enter():
            return None
        try:
            try:
                return r.call_gil(sc, descs, held)
            except OSError as exc:
                return self.file._failed(exc)
        finally:
            if fl.leave():
                self.file._release_now()

    cdef object _send(self, uint32_t handle, uint32_t sc, Py_ssize_t n, bytearray hdr, char *descs):
        cdef uint32_t *h32 = <uint32_t *>PyByteArray_AS_STRING(hdr)
        h32[0] = handle
        h32[1] = sc
        (<uint64_t *>(h32 + 2))[0] = <uint64_t><size_t>descs if n else 0
        return self.ioctl(self.request, hdr)

    cdef int _translate(self, uint64_t *d) except -2:
        """Fill the fd/attr word of buffer descriptor ``d`` from the registered ranges: 0, or
        -1 for a buffer that starts in a range and overruns it (AEE_EBADPARM)."""
        cdef reg_t *r = NULL
        cdef int k = self.regs.find(d[0], d[1], &r)
        if k < 0:
            return -1
        if k > 0:
            (<uint32_t *>(d + 2))[1] = r.attr
            if self.translate is None:
                (<int32_t *>(d + 2))[0] = r.fd
            elif r.cache_key == self.key:
                (<int32_t *>(d + 2))[0] = r.cache_ref
            else:
                ref = self.translate(r.fd)
                k = self.regs.find(d[0], d[1], &r)  # translate ran Python code
                if k <= 0:
                    return -1
                r.cache_key = self.key
                r.cache_ref = ref
                (<int32_t *>(d + 2))[0] = ref
        return 0

    cdef object _invoke_c(self, uint32_t handle, uint32_t sc, CArgs args, Py_ssize_t n,
                          Py_ssize_t nbufs, bytearray hdr, char *descs):
        """The invoke of a C caller: ``pra`` entries (16 B: ``{pv, nLen}`` or ``{fd, offset}``)
        become descriptors in place; the driver checks every buffer address it is given."""
        cdef size_t mark
        cdef uint64_t small[2 * PRA_STACK]
        cdef uint64_t *pra = small
        if args.count != n or (n and args.address == 0):
            return self._host(AEE_EBADPARM)
        if n > PRA_STACK:
            pra = <uint64_t *>malloc(16 * n)
            if pra == NULL:
                return self._host(AEE_ENOMEMORY)
        # One user-copy scope for the whole call: its copies share one look at the guard.
        mark = _pins.begin()
        try:
            return self._invoke_c_scoped(handle, sc, args, n, nbufs, hdr, descs, pra)
        finally:
            _pins.end(mark)
            if pra != small:
                free(pra)

    cdef object _invoke_c_scoped(self, uint32_t handle, uint32_t sc, CArgs args, Py_ssize_t n,
                                 Py_ssize_t nbufs, bytearray hdr, char *descs, uint64_t *pra):
        # (_invoke_c's body, inside its scope)
        global qda_compat_errno
        cdef Py_ssize_t i
        cdef size_t mark
        cdef uint64_t *d
        cdef object ret
        cdef bint whole
        # The whole remote_arg array in one checked copy; if some of it is unreadable, entry by
        # entry, so the entries before the bad one are handled as before.
        whole = n == 0 or _pins.copy_from_user(pra, args.address, 16 * n) == 0
        try:
            for i in range(n):
                if not whole and _pins.copy_from_user(pra + 2 * i, args.address + 16 * i, 16) != 0:
                    self._host(AEE_EBADPARM)
                    qda_compat_errno = 14  # EFAULT
                    return AEE_EBADPARM
                d = <uint64_t *>(descs + DESC_SIZE * i)
                if i >= nbufs:
                    # remote_dma_handle {int32 fd; uint32 offset} (little-endian LP64)
                    ptr, length, fd, attr = self.handle_slot(
                        (<int32_t>(pra[2 * i] & <uint64_t>0xFFFFFFFF), <uint32_t>(pra[2 * i] >> 32)))
                    d[0] = ptr
                    d[1] = length
                    (<int32_t *>(d + 2))[0] = fd
                    (<uint32_t *>(d + 2))[1] = attr
                    continue
                d[0] = pra[2 * i]
                d[1] = pra[2 * i + 1]
                (<int32_t *>(d + 2))[0] = -1
                (<uint32_t *>(d + 2))[1] = 0
                if d[1] and self._translate(d) < 0:
                    return self._host(AEE_EBADPARM)
        except (TypeError, ValueError, OverflowError):
            return self._host(AEE_EBADPARM)
        mark = _pins.mark()
        try:
            if n:
                _pins.pin(descs, DESC_SIZE * n, 0)  # the buffers stay raw: the checked path
            ret = self._routed(handle, sc, descs, False) if self.lane is not None else None
            if ret is None:
                ret = self._send(handle, sc, n, hdr, descs)
        finally:
            _pins.unpin(mark)
        return self._result(ret)

    cdef object _result(self, object ret):
        global qda_compat_errno, qda_compat_origin
        cdef long long rv = ret
        if rv == 0:
            qda_compat_errno = 0
            qda_compat_origin = ORIGIN_DSP
            return 0
        if -4096 < rv < 0:
            qda_compat_errno = <int>-rv
            qda_compat_origin = ORIGIN_DRIVER
            return <uint32_t>qda_errno_to_aee(<int>-rv)
        qda_compat_errno = 0
        qda_compat_origin = ORIGIN_DSP
        return <uint32_t>(rv & 0xFFFFFFFF)


cdef class Record:
    """An open ``remote_handle64``: its session, the DSP's handle, the URI it was opened with,
    and the session's invoker (cached: the invoke fast path reads only the record)."""
    cdef readonly object h64, session, dsp_handle, uri, invoker

    def __init__(self, h64, session, dsp_handle, uri):
        self.h64, self.session, self.dsp_handle, self.uri = h64, session, dsp_handle, uri
        self.invoker = session.invoker

    def __repr__(self):
        return f"<Record h64={self.h64:#x} dsp_handle={self.dsp_handle:#x} uri={self.uri!r}>"


# -- remote_handle64_invoke from Python ------------------------------------------------------------
# The public function itself: a Python frame in front of the invoker cost about a third of a
# null invoke. It serves the usual call (no trace, an open handle of an Invoker's session, an
# int sc) and hands everything else, and a failed call's error, to handle64's Python code.
cdef dict _h64_records = None   # libadsprpc_compat.process._records (never rebound)
cdef object _h64_slow = None    # handle64's Python implementation (the trace, the odd cases)
cdef object _h64_failed = None  # handle64.invoke_failed(rec, sc, code): raises


def bind_h64(dict records, slow, failed):
    """Give :func:`remote_handle64_invoke` the process's handle table and handle64's Python
    functions (done once, by ``libadsprpc_compat.handle64``)."""
    global _h64_records, _h64_slow, _h64_failed
    _h64_records, _h64_slow, _h64_failed = records, slow, failed


@cython.annotation_typing(False)  # (the annotations are the API's: the checks are below)
def remote_handle64_invoke(h: int, sc: int, args=()) -> None:
    """Invoke method ``REMOTE_SCALARS_METHOD(sc)`` of multi-domain handle ``h``.

    @param[in] h     handle from remote_handle64_open
    @param[in] sc    scalars word
    @param[in,out] args  in-bufs, out-bufs, in-handles, out-handles: buffer-protocol objects
                     (out-buffers writable); a buffer inside a registered range (rpcmem,
                     remote_register_buf) goes by reference, others are copied; handle slots
                     take ``remote_dma_handle`` or ``(fd, offset)``
    AEE codes: AEE_EINVHANDLE, AEE_EBADPARM (count mismatch, read-only out-buffer, buffer
    overrunning its registered range, ``sc`` not a uint32_t), AEE_EUNSUPPORTED (after remote_set_mode),
    AEE_ECONNRESET (SSR, or the session was closed during the call), AEE_ERPC, DSP codes
    (0x8000040e, 0x80000414, 0x8000043e, 0x8000040d, any code the method returns)
    """
    cdef uint32_t c_sc
    cdef object rec
    if not _TRACE.on and type(sc) is int and _h64_records is not None:
        rec = _h64_records.get(h)
        if type(rec) is Record and type((<Record>rec).invoker) is Invoker:
            try:
                c_sc = sc
            except OverflowError:
                return _h64_slow(h, sc, args)  # (its AEE_EBADPARM, said)
            code = (<Invoker>(<Record>rec).invoker).call((<Record>rec).dsp_handle, c_sc, args)
            if code:
                _h64_failed(rec, sc, code)
            return None
    if _h64_slow is None:
        raise RuntimeError("remote_handle64_invoke: libadsprpc_compat.handle64 is not imported")
    return _h64_slow(h, sc, args)


cdef class Face:
    """The C library's fast entry for one flavour (``qdarpc/face.h``): ``remote_handle64_invoke``
    from C straight into the handle's :class:`Invoker`. It serves the call the Python API's
    ``remote_handle64_invoke`` serves without a trace or a second flavour to tell handles
    apart; anything else, and the error a failed invoke raises, goes to the Python functions
    it is given, which return the call's int as the C face's Python functions do."""
    cdef qdarpc_face c
    cdef dict records       # libadsprpc_compat.process._records (never rebound)
    cdef object flavours    # the C face's loaded flavours: two or more -> the Python function
    cdef object trace       # qda_core.trace (its RECORDER)
    cdef object slow        # (h, sc, pra) -> int: the flavour's Python remote_handle64_invoke
    cdef object failed      # (record, sc, code) -> int: a failed invoke's code and errno
    cdef object error       # () -> int: the code of the exception being handled

    def __cinit__(self, dict records, flavours, trace, slow, failed, error):
        self.records, self.flavours, self.trace = records, flavours, trace
        self.slow, self.failed, self.error = slow, failed, error
        self.c.abi = QDARPC_FACE_ABI
        self.c.h64_invoke = _face_h64_invoke
        self.c.route_invoke = _face_route_invoke
        self.c.ctx = <void *>self

    def capsule(self):
        """A capsule of the entry that keeps this object alive as long as it lives."""
        cap = PyCapsule_New(&self.c, QDARPC_FACE_CAPSULE, _face_capsule_free)
        Py_INCREF(self)
        PyCapsule_SetContext(cap, <void *>self)
        return cap

    def __call__(self, unsigned long long h, unsigned int sc, unsigned long long pra):
        """The entry, from Python (what C gets through the capsule): the call's int."""
        return _face_h64_invoke(<void *>self, h, sc, pra)


cdef void _face_capsule_free(object cap) noexcept:
    Py_DECREF(<object>PyCapsule_GetContext(cap))


cdef long long _face_h64_invoke(void *ctx, unsigned long long h, unsigned int sc,
                                unsigned long long pra) noexcept:
    cdef Face f = <Face>ctx
    try:
        if _TRACE.on or len(f.flavours) > 1:  # (trace.RECORDER is not None: its switch)
            return f.slow(h, sc, pra)
        rec = f.records.get(h)
        if type(rec) is not Record or type((<Record>rec).invoker) is not Invoker:
            return f.slow(h, sc, pra)  # AEE_EINVHANDLE, said by the API
        # (no arguments: None, which the invoker takes as a C caller's empty remote_arg array)
        code = (<Invoker>(<Record>rec).invoker).call(
            (<Record>rec).dsp_handle, sc, CArgs.__new__(CArgs, pra, sc_length(sc)) if sc_length(sc) else None)
        if code == 0:
            if not sc & 0xFF and sc_length(sc) <= ROUTE_ARGS_KEPT:  # a call a route serves: take one
                # for the next (once per change)
                try:
                    _routes.refresh(h, rec, f)
                except BaseException as e:  # a bug of ours: said, and the call's answer stands
                    report_internal("the routes' table", e)
            return 0
        return f.failed(rec, sc, code)
    except BaseException:
        try:
            return f.error()
        except BaseException:
            return 1  # AEE_EFAILED: not even the report could be made



# -- routes (docs/dataplane.md "Routes") ----------------------------------------------------------
# A C caller's remote_handle64_invoke of a method without arguments, on a handle whose DSP side
# is a native skel, is served without the GIL by the handle's route (qda_core._engine's
# EngineRoute: the driver file's reference, a context id, the message in the route's own buffer,
# the DSP's route to the skel). The table maps handles to routes; it is read without the GIL:
# a reader finds a slot by its handle, counts itself in (inflight), then reads the handle again
# and declines if it changed. A retirement empties the handle (seq_cst) and never waits: the
# slot keeps its route, record and invoker until no call is counted in it, when a reaper (any
# writer, or a pending call the last such call schedules) closes the route and frees the slot.
# Either a reader sees the empty handle, or the reaper sees it counted. Slots are never freed
# (static), so a reader never touches freed memory; nothing a reader reads is cleared under it.
cdef enum:
    _NSLOTS = 256   # handles with a route at once (more: the others take the lanes)
    _PROBES = 8


cdef struct _slot:
    unsigned long long h        # the handle (0: free or retiring)
    long inflight               # calls counted in now
    long served                 # calls the route served since it was taken
    PyObject *route             # the EngineRoute (a reference), NULL while free
    uint32_t *fail_next         # the handle's Invoker's (remote_set_mode's next failure)
    PyObject *invoker           # (a reference: keeps fail_next)
    PyObject *rec               # the handle's record (a reference: a failed call's report)
    regtab_t *regs              # its invoker's registered ranges (a call's buffers in one: the GIL's path)


cdef _slot _slots[_NSLOTS]
memset(_slots, 0, sizeof(_slots))
cdef int _retiring = 0          # slots retired whose route is not closed yet (a hint for the reaper)


cdef inline unsigned int _home(unsigned long long h) noexcept nogil:
    return <unsigned int>(((h ^ (h >> 29)) * <unsigned long long>0x9E3779B97F4A7C15) >> 56) & (_NSLOTS - 1)


cdef _slot *_find(unsigned long long h) noexcept nogil:
    """The slot of handle ``h`` (0: a free or retiring one), or NULL: within ``_PROBES`` of its home."""
    cdef unsigned int i, k = _home(h)
    for i in range(_PROBES):
        if qda_load_ull(&_slots[(k + i) & (_NSLOTS - 1)].h) == h:
            return &_slots[(k + i) & (_NSLOTS - 1)]
    return NULL


cdef class _Routes:
    """The table's writers (with the GIL) and its counts."""
    cdef dict _refused          # handle -> the epoch a route was refused at (not asked again before a change)
    cdef dict _earlier          # handle -> calls served by its earlier routes (until the handle goes)
    cdef public bint off        # two C library flavours were loaded: no route is taken again
    cdef unsigned long long last_refused, last_epoch  # the last refusal (a handle's every call asks)

    def __cinit__(self):
        self._refused = {}
        self._earlier = {}
        self.off = False

    cdef int refresh(self, unsigned long long h, rec, Face face) except -1:
        """After a call the lanes served on handle ``h``: a route for the next ones, unless one
        is live, or one was refused since the last change."""
        cdef _slot *s
        cdef unsigned long long epoch = _ROUTES.n
        cdef unsigned int i, k
        if h == self.last_refused and epoch == self.last_epoch and not _retiring:
            return 0  # (refused since the last change: the usual answer for a Python skel's handle)
        self._reap()
        if self.off or len(face.flavours) > 1:
            return 0
        s = _find(h)
        if s != NULL:
            if not (<EngineRoute><object>s.route).stale():
                (<EngineRoute><object>s.route).reserve()  # (a second buffer it lacked, if any)
                return 0  # declined for the moment (a trace, a rule, another thread's call)
            self._retire(s, h)
        if self._refused.get(h) == epoch:
            self.last_refused, self.last_epoch = h, epoch
            return 0
        if len(self._refused) > 4 * _NSLOTS:
            self._refused.clear()
        self._refused[h] = epoch  # until a route is in place (the refusals below, a full table)
        self.last_refused, self.last_epoch = h, epoch
        inv = rec.invoker
        f = getattr((<Invoker>inv).ioctl, "__self__", None)  # the session's driver file
        route = f.route(rec.dsp_handle) if f is not None and hasattr(f, "route") else None
        if route is None:
            return 0
        if not (<EngineRoute>route).native:  # a Python skel's: it needs the GIL anyway
            route.close()
            return 0
        k = _home(h)
        for i in range(_PROBES):
            s = &_slots[(k + i) & (_NSLOTS - 1)]
            if s.h == 0 and s.route == NULL:  # (free: a retiring slot keeps its route)
                self._refused.pop(h, None)  # (a forget meanwhile may have taken it)
                self.last_refused = 0
                Py_INCREF(route)
                Py_INCREF(inv)
                Py_INCREF(rec)
                s.route, s.invoker, s.rec = <PyObject *>route, <PyObject *>inv, <PyObject *>rec
                s.fail_next = &(<Invoker>inv).fail_next
                regs = (<Invoker>inv).regs
                s.regs = &(<RegTable>regs).t if regs is not None else NULL
                s.served = 0
                qda_store_ull(&s.h, h)  # last: a reader finding h finds the rest
                # (route() ran Python code: the handle may have been closed, or a second flavour
                # loaded, meanwhile, by a thread that looked for this route before it was here)
                if face.records.get(h) is not rec or self.off or len(face.flavours) > 1:
                    self.forget(h)
                return 0
        route.close()  # no free slot near its home: the lanes serve it
        return 0

    def forget(self, unsigned long long h):
        """Retire handle ``h``'s route (its close, a session's teardown): no call starts on it
        after this; it is closed once the calls in flight on it return. Never waits."""
        cdef _slot *s = _find(h) if h else NULL
        self._refused.pop(h, None)
        if h == self.last_refused:
            self.last_refused = 0
        if s != NULL:
            self._retire(s, h)
        self._earlier.pop(h, None)
        self._reap()

    cdef int _retire(self, _slot *s, unsigned long long h) except -1:
        global _retiring
        qda_store_ull(&s.h, 0)  # seq_cst: a call counted in after this sees it and declines
        self._earlier[h] = self._earlier.get(h, 0) + qda_load_long(&s.served)
        _retiring += 1
        return 0

    def reap(self):
        """Close the retired routes no call is in any more (the GIL's holders call it; the last
        call out of a retired slot schedules it)."""
        self._reap()

    cdef int _reap(self) except -1:
        global _retiring
        cdef Py_ssize_t i
        if not _retiring:
            return 0
        for i in range(_NSLOTS):
            if _slots[i].h == 0 and _slots[i].route != NULL and qda_load_long(&_slots[i].inflight) == 0:
                route, inv, rec = <object>_slots[i].route, <object>_slots[i].invoker, <object>_slots[i].rec
                _slots[i].route = _slots[i].invoker = _slots[i].rec = NULL
                _slots[i].fail_next = NULL
                _retiring -= 1
                Py_DECREF(route)
                Py_DECREF(inv)
                Py_DECREF(rec)
                route.close()
        return 0

    def forget_all(self):
        """Retire every route (a fork's child)."""
        for i in range(_NSLOTS):
            if _slots[i].h:
                self.forget(_slots[i].h)
        self._refused.clear()
        self.last_refused = 0
        self._earlier.clear()
        self._reap()

    def turn_off(self):
        """No route from now on (a second C library flavour: handles must be told apart)."""
        self.off = True
        self.forget_all()

    def after_fork(self):
        """In a fork's child: retire every route (the parent's threads' calls are not here)."""
        for i in range(_NSLOTS):
            _slots[i].inflight = 0
        self.forget_all()

    def live(self):
        """The handles with a route now."""
        self._reap()
        return [_slots[i].h for i in range(_NSLOTS) if _slots[i].h]

    def retiring(self):
        """Routes retired whose close waits for a call still in them."""
        self._reap()
        return _retiring

    def served(self, unsigned long long h):
        """Calls handle ``h``'s routes served while it is open."""
        cdef _slot *s = _find(h) if h else NULL
        return (qda_load_long(&s.served) if s != NULL else 0) + self._earlier.get(h, 0)

    def route(self, unsigned long long h):
        """Handle ``h``'s route, or None (tests)."""
        cdef _slot *s = _find(h) if h else NULL
        return <object>s.route if s != NULL and s.route != NULL else None


cdef _Routes _routes = _Routes()
#: The process's route table (``forget`` when a handle goes, ``live``, ``served``, ``route``).
routes = _routes


cdef int _reap_pending(void *arg) noexcept with gil:
    try:
        _routes._reap()
    except BaseException as e:
        report_internal("the routes' table", e)
    return 0


cdef long long _face_route_invoke(void *ctx, unsigned long long h, unsigned int sc,
                                  unsigned long long pra) noexcept nogil:
    """The C face's GIL-free entry (``qdarpc_face.route_invoke``): the call's int as
    :func:`_face_h64_invoke` answers it, or ``QDARPC_FACE_DECLINED`` when the handle has no
    live route for it (the bridge then takes the GIL and that entry)."""
    global qda_compat_errno, qda_compat_origin
    cdef _slot *s
    cdef long long ret
    cdef uint32_t n = sc_length(sc)
    if sc & 0xFF or n > ROUTE_ARGS_KEPT or h == 0 or (n and pra == 0):  # (handles; a NULL pra: the API's error)
        return QDARPC_FACE_DECLINED
    s = _find(h)
    if s == NULL:
        return QDARPC_FACE_DECLINED
    qda_inc_long(&s.inflight, 1)
    # the handle again, after the count (see the table's comment): still there, the rest is valid
    # until the count is dropped
    if qda_load_ull(&s.h) != h or s.fail_next[0]:
        ret = ROUTE_DECLINED
    else:
        ret = _route_args(s, sc, pra, n) if n else (<EngineRoute>s.route).call(sc)
        if ret != ROUTE_DECLINED:
            qda_inc_long(&s.served, 1)
            if ret == 0:
                qda_compat_errno = 0
                qda_compat_origin = ORIGIN_DSP_C
            else:
                ret = _route_failed(ctx, s.rec, sc, ret)
    if qda_inc_long(&s.inflight, -1) == 0 and qda_load_ull(&s.h) != h:
        Py_AddPendingCall(_reap_pending, NULL)  # retired while this call was in it: its close
    return QDARPC_FACE_DECLINED if ret == ROUTE_DECLINED else ret


cdef enum:
    ORIGIN_DSP_C = 0
    ORIGIN_DRIVER_C = 2


cdef long long _route_args(_slot *s, unsigned int sc, unsigned long long pra, uint32_t n) noexcept nogil:
    """A C caller's call with buffers on its route, without the GIL: its ``remote_arg`` array
    read (the checked copy), each buffer a copied one - in no registered range of the
    invoker's table (read under its lock; a registration made meanwhile comes after this call)
    - then :meth:`EngineRoute.call_args`; ``ROUTE_DECLINED`` before anything happened otherwise
    (an unreadable array, a buffer by reference: the GIL's path answers as ever)."""
    cdef uint64_t raw[2 * ROUTE_ARGS_KEPT]
    cdef uint64_t descs[3 * ROUTE_ARGS_KEPT]
    cdef uint32_t i
    cdef size_t mark
    cdef long long ret
    if s.regs == NULL:
        return ROUTE_DECLINED
    mark = _pins.begin()  # (one look at the guard for this copy and the call's)
    if _pins.copy_from_user(raw, pra, 16 * n) != 0:
        _pins.end(mark)
        return ROUTE_DECLINED  # (AEE_EBADPARM with errno EFAULT: the API's, through the GIL)
    for i in range(n):  # {pv, nLen} -> {ptr, len, fd -1, attr 0}, as _invoke_c_scoped makes them
        if raw[2 * i + 1] and _regs_hit(s.regs, raw[2 * i], raw[2 * i + 1]):
            _pins.end(mark)
            return ROUTE_DECLINED  # by reference (or overrunning its range): the GIL's path
        descs[3 * i] = raw[2 * i]
        descs[3 * i + 1] = raw[2 * i + 1]
        (<int32_t *>&descs[3 * i + 2])[0] = -1
        (<uint32_t *>&descs[3 * i + 2])[1] = 0
    ret = (<EngineRoute>s.route).call_args(sc, <const char *>descs, n)
    _pins.end(mark)
    return ret


cdef long long _route_failed(void *ctx, PyObject *rec, unsigned int sc, long long ret) noexcept with gil:
    # a failed call on a route: its code and errno as the API makes them (Face.failed), with the
    # record the route was taken for (a teardown meanwhile: the API's AEE_ECONNRESET)
    global qda_compat_errno, qda_compat_origin
    cdef Face f = <Face>ctx
    cdef long long code
    try:
        if ret < 0:
            qda_compat_errno = <int>-ret
            qda_compat_origin = ORIGIN_DRIVER_C
            code = <uint32_t>qda_errno_to_aee(<int>-ret)
        else:
            qda_compat_errno = 0
            qda_compat_origin = ORIGIN_DSP_C
            code = ret
        return f.failed(<object>rec, sc, code)
    except BaseException:
        try:
            return f.error()
        except BaseException:
            return 1  # AEE_EFAILED
