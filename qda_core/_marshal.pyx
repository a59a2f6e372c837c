# cython: language_level=3, boundscheck=False, wraparound=False
"""Invoke marshalling over the C core (csrc/marshal.c, decode.c, uaccess.c), and the user copies.

Same API, results and errors as the pure-Python oracle ``qda_core.marshal_ref``; see there
and csrc/include/qdarpc/marshal.h for the semantics. Import through ``qda_core.marshal``.

User copies (csrc/uaccess.c) take one of two paths with the same results:

* **known-valid** memory is copied with ``memcpy``: ranges the calling thread pinned for the
  duration of a call (:class:`ArgPins` pins the buffers a typed invoke was given, the library's
  invoker its callers' buffers) and mappings of the emulator's VMA registry (``vma_add``) whose
  owner exports them (the GEM and dma-buf CPU mappings, mmaps), each held through an export of
  its owner while copied, so it can be neither closed nor freed meanwhile;
* anything else, raw addresses above all, goes through ``process_vm_readv``/``writev``, which
  report a bad pointer as ``EFAULT``.

Memory is known-valid when its exporter vouches for it (:func:`vouches`): bytes, bytearray,
array.array, a writable mmap whose file still covers it, numpy arrays and memoryviews over
those. ctypes objects are not (``from_address`` makes a buffer of any address), nor are
read-only mmaps (``PROT_NONE`` is a read-only mmap too).
"""
from cpython.buffer cimport (PyObject_CheckBuffer, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE,
                             PyBUF_WRITABLE)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Check, PyByteArray_CheckExact, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_Check, PyBytes_CheckExact
from cpython.list cimport PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.exc cimport PyErr_Clear
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from qda_core._cwire cimport sc_length
from cpython.weakref cimport PyWeakref_GET_OBJECT, PyWeakref_NewRef
from libc.stdint cimport uint32_t, uint64_t, int32_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy, memmove, memset, strcmp

cimport cython

from qda_core._cdev cimport Pages

import array as _array
import errno as _errno
import mmap as _mmap
import sys as _sys

from qda_core.errors import errno_error

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

BACKEND = "c"

cdef extern from "qdarpc/marshal.h" nogil:
    struct qda_uaccess:
        pass
    struct qda_marshal_status:
        int arg
        const char *why
    uint64_t qda_metadata_size(uint32_t n)
    int qda_payload_size(uint32_t sc, const void *args, size_t args_len, const void *refs,
                         size_t refs_len, uint64_t *pkt_size, qda_marshal_status *st)
    int qda_pack(uint32_t sc, const void *args, size_t args_len, const void *refs,
                 size_t refs_len, void *payload, size_t payload_len, uint64_t payload_va,
                 uint64_t payload_dev, const qda_uaccess *ua, uint64_t *pkt_size,
                 qda_marshal_status *st)
    int qda_plan(uint32_t sc, const void *args, size_t args_len, const void *refs, size_t refs_len,
                 qda_olap *olaps, uint64_t *pkt_size, qda_marshal_status *st)
    int qda_pack_planned(uint32_t sc, const void *args, const void *refs, const qda_olap *olaps,
                         uint64_t pkt_size, void *payload, size_t payload_len, uint64_t payload_va,
                         uint64_t payload_dev, const qda_uaccess *ua, qda_marshal_status *st)
    int qda_unpack(uint32_t sc, const void *args, size_t args_len, const void *refs,
                   size_t refs_len, const void *payload, size_t payload_len,
                   uint64_t payload_va, const qda_uaccess *ua, uint64_t *fdlist,
                   qda_marshal_status *st)
    int qda_decode(uint32_t sc, const void *payload, size_t payload_len, qda_dec_buf *bufs,
                   size_t bufs_cap, qda_dec_handle *handles, size_t handles_cap,
                   qda_marshal_status *st)

cdef extern from "qdarpc/uaccess.h" nogil:
    struct qda_pin_api:
        size_t (*mark)()
        int (*pin)(const void *base, size_t len, int writable)
        void (*unpin)(size_t mark)
        int (*pin_view)(void *view, int writable)
        int (*vouches)(void *view)
        int (*copy_from_user)(void *dst, uint64_t uaddr, size_t len)
        size_t (*begin)()
        void (*end)(size_t mark)
    const qda_uaccess qda_uaccess_held
    ctypedef int (*qda_guarded_copy_fn)(void *dst, const void *src, size_t n)
    ctypedef int (*qda_guard_armed_fn)()
    void qda_uaccess_set_guarded(qda_guarded_copy_fn fn, qda_guard_armed_fn armed)
    unsigned long long qda_uaccess_guarded_count()
    unsigned long long qda_uaccess_guard_checks(unsigned long long *refused)
    size_t qda_uaccess_begin()
    void qda_uaccess_end(size_t mark)
    void qda_uaccess_recheck()
    int qda_uaccess_prepare()
    int qda_copy_from_user(void *dst, uint64_t uaddr, size_t len)
    int qda_copy_to_user(uint64_t uaddr, const void *src, size_t len)
    int qda_copy_from_user_checked(void *dst, uint64_t uaddr, size_t len)
    int qda_copy_to_user_checked(uint64_t uaddr, const void *src, size_t len)
    size_t qda_uaccess_pin_mark()
    int qda_uaccess_pin(const void *base, size_t len, int writable)
    void qda_uaccess_unpin(size_t mark)
    int qda_uaccess_pinned(uint64_t uaddr, size_t len, int write)
    void qda_uaccess_stats(unsigned long long *memcpys, unsigned long long *checked)

# The copy pipe exists from import on, so it never shows up as a descriptor "leaked" by
# whichever call happens to be first (failure is fine: copies then go one syscall each).
qda_uaccess_prepare()

# Above this payload size the copies dominate; let other threads run meanwhile.
cdef enum:
    NOGIL_MIN = 65536
    REG_PINS_MAX = 16   # registry mappings one call pins; more take the checked path


cdef inline uint64_t _ld64(const char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)  # unaligned-safe (descriptors may sit at any offset of a caller's buffer)
    return v


# --- known-valid memory -------------------------------------------------------------------
cdef object _ndarray = None  # numpy.ndarray once the caller has imported numpy (never imported here)


cdef int _mmap_covered(object mm, bint sealed) except -1:
    # A file truncated under a mapping raises SIGBUS on access, where a checked copy says EFAULT.
    # A caller's file can be truncated at any time, during the call too (by the skel, another
    # thread or process): only an anonymous mapping vouches for its memory. A registered
    # mapping's file is the emulator's own (sealed against shrinking, mem.backing): covered now.
    try:
        size = mm.size()
    except OSError:
        return 1  # anonymous: no file to shrink
    return 1 if sealed and size >= len(mm) else 0


cdef int _vouches(object obj, Py_buffer *view, bint registered=False) noexcept:
    """1 if ``obj`` (the exporter of ``view``) guarantees the memory of ``view`` is mapped and
    readable, and writable unless ``view.readonly``, for as long as ``view`` is held
    (``registered``: a mapping of the emulator's VMA registry, whose files cannot shrink)."""
    global _ndarray
    cdef int depth
    try:
        if _ndarray is None:
            np = _sys.modules.get("numpy")
            if np is not None:
                _ndarray = np.ndarray
        for depth in range(16):
            if PyBytes_Check(obj) or PyByteArray_Check(obj) or isinstance(obj, _array.array):
                return 1
            if isinstance(obj, memoryview):
                obj = obj.obj  # None for a view of raw C memory
                continue
            if type(obj) is Pages:  # (anyone can make one: its mapping vouches, or not)
                obj = <object>(<Pages>obj)._held.obj
                continue
            if isinstance(obj, _mmap.mmap):
                # read-only covers PROT_NONE; a writable one is readable too (Linux)
                return 1 if view.readonly == 0 and _mmap_covered(obj, registered) else 0
            if _ndarray is not None and isinstance(obj, _ndarray):
                base = obj.base
                if base is None:
                    return 1  # owns its data
                obj = base
                continue
            return 0  # ctypes (from_address), objects of unknown origin
    except BaseException:
        PyErr_Clear()
    return 0


cdef int _pin_view(void *vp, int writable) noexcept:
    """Pin a held Py_buffer if its exporter vouches for it; 1 if pinned."""
    cdef Py_buffer *v = <Py_buffer *>vp
    if v.len <= 0 or <PyObject *>v.obj == NULL or not _vouches(v.obj, v):
        return 0
    return 1 if qda_uaccess_pin(v.buf, <size_t>v.len, 1 if writable and not v.readonly else 0) == 0 else 0


cdef int _vouches_view(void *vp) noexcept:
    """1 if :func:`_pin_view` would pin this held Py_buffer (nothing pinned)."""
    cdef Py_buffer *v = <Py_buffer *>vp
    if v.len <= 0 or <PyObject *>v.obj == NULL:
        return 0
    if PyByteArray_CheckExact(<object>v.obj) or PyBytes_CheckExact(<object>v.obj):  # (the usual ones, first)
        return 1
    return _vouches(v.obj, v)


def vouches(buf):
    """Whether copies of ``buf`` would take the memcpy path (its exporter vouches for it)."""
    cdef Py_buffer v
    PyObject_GetBuffer(buf, &v, PyBUF_SIMPLE)
    try:
        return bool(v.len and _vouches(v.obj, &v))
    finally:
        PyBuffer_Release(&v)


cdef qda_pin_api _api
_api.mark = qda_uaccess_pin_mark
_api.pin = qda_uaccess_pin
_api.unpin = qda_uaccess_unpin
_api.pin_view = _pin_view
_api.vouches = _vouches_view
_api.copy_from_user = qda_copy_from_user
_api.begin = qda_uaccess_begin
_api.end = qda_uaccess_end
#: ``struct qda_pin_api`` (csrc/include/qdarpc/uaccess.h) of this module's copy of uaccess.c,
#: for extensions that build descriptors themselves (libadsprpc_compat._remote).
PIN_API = PyCapsule_New(&_api, "qda_core._marshal.PIN_API", NULL)


# --- the emulator's VMA registry ----------------------------------------------------------
# Sorted by (start, token); only touched with the GIL held. An owner that exports a buffer (an
# mmap) is kept as a weak reference: copies into its range take an export for their duration.
cdef struct vma_ent:
    uint64_t start
    uint64_t size
    uint64_t pgoff
    uint64_t token
    PyObject *key    # strong
    PyObject *wref   # strong reference to a weakref of the owner, or NULL

cdef vma_ent *_vmas = NULL
cdef Py_ssize_t _nvmas = 0
cdef Py_ssize_t _capvmas = 0


cdef Py_ssize_t _vma_upper(uint64_t addr) noexcept:
    """Index of the first entry with start > addr."""
    cdef Py_ssize_t lo = 0, hi = _nvmas, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _vmas[mid].start <= addr:
            lo = mid + 1
        else:
            hi = mid
    return lo


def vma_add(uint64_t token, uint64_t start, uint64_t size, uint64_t pgoff, key, owner):
    """Register ``[start, start+size)``, a mapping of file ``key`` from byte ``pgoff``, under
    ``token`` (larger for newer registrations). If ``owner`` exports a buffer covering the range
    (an mmap), raw copies into it become known-valid while ``owner`` lives."""
    global _vmas, _nvmas, _capvmas
    cdef Py_ssize_t i, cap
    cdef vma_ent *p
    w = PyWeakref_NewRef(owner, None) if PyObject_CheckBuffer(owner) else None
    if _nvmas == _capvmas:
        cap = _capvmas * 2 if _capvmas else 64
        p = <vma_ent *>realloc(_vmas, cap * sizeof(vma_ent))
        if p == NULL:
            raise MemoryError()
        _vmas, _capvmas = p, cap
    i = _vma_upper(start)
    while i > 0 and _vmas[i - 1].start == start and _vmas[i - 1].token > token:
        i -= 1
    memmove(&_vmas[i + 1], &_vmas[i], (_nvmas - i) * sizeof(vma_ent))
    _vmas[i].start = start
    _vmas[i].size = size
    _vmas[i].pgoff = pgoff
    _vmas[i].token = token
    Py_INCREF(key)
    _vmas[i].key = <PyObject *>key
    if w is not None:
        Py_INCREF(w)
        _vmas[i].wref = <PyObject *>w
    else:
        _vmas[i].wref = NULL
    _nvmas += 1


def vma_remove(uint64_t token, uint64_t start):
    """Drop the registration ``token`` at ``start``; False if there is none."""
    global _nvmas
    cdef Py_ssize_t i = _vma_upper(start) - 1
    cdef PyObject *key
    cdef PyObject *wref
    while i >= 0 and _vmas[i].start == start:
        if _vmas[i].token == token:
            key, wref = _vmas[i].key, _vmas[i].wref
            memmove(&_vmas[i], &_vmas[i + 1], (_nvmas - i - 1) * sizeof(vma_ent))
            _nvmas -= 1
            Py_XDECREF(key)  # after the table is consistent: a decref may run Python code
            Py_XDECREF(wref)
            return True
        i -= 1
    return False


def vma_find(uint64_t addr):
    """``(start, size, pgoff, key)`` of the newest registration at the highest start <= addr if
    it contains ``addr``, else None."""
    cdef Py_ssize_t i = _vma_upper(addr) - 1
    if i < 0 or addr - _vmas[i].start >= _vmas[i].size:
        return None
    return (_vmas[i].start, _vmas[i].size, _vmas[i].pgoff, <object>_vmas[i].key)


def vma_count():
    """Registrations in the table."""
    return _nvmas


cdef int _pin_registered(uint64_t uaddr, uint64_t n, int write, Py_buffer *out) noexcept:
    """If the registry's mapping at ``uaddr`` holds ``n`` bytes and its owner lives and vouches
    for them: take an export of the owner into ``out`` (the caller releases it), pin it, 1."""
    cdef Py_ssize_t i = _vma_upper(uaddr) - 1
    cdef PyObject *owner
    if i < 0 or _vmas[i].wref == NULL:
        return 0
    if uaddr - _vmas[i].start >= _vmas[i].size or n > _vmas[i].size - (uaddr - _vmas[i].start):
        return 0
    owner = PyWeakref_GET_OBJECT(<object>_vmas[i].wref)  # None once it is being freed
    if owner == <PyObject *>None:
        return 0
    try:
        PyObject_GetBuffer(<object>owner, out, PyBUF_SIMPLE)  # closed mmap: ValueError
    except BaseException:
        PyErr_Clear()
        return 0
    if (uaddr < <uint64_t><size_t>out.buf or n > <uint64_t>out.len or
            uaddr - <uint64_t><size_t>out.buf > <uint64_t>out.len - n or
            (write and out.readonly) or not _vouches(<object>owner, out, True) or
            qda_uaccess_pin(out.buf, <size_t>out.len, 0 if out.readonly else 1) != 0):
        PyBuffer_Release(out)
        return 0
    return 1


cdef int _pin_registered_args(uint32_t sc, Py_buffer *a, Py_buffer *r, int to_user,
                              Py_buffer *regs) noexcept:
    """Pin the registry mappings that hold this call's inline in-buffers (or out-buffers when
    ``to_user``) and that nothing pinned yet; returns the number of exports taken in ``regs``."""
    cdef uint32_t nin = (sc >> 16) & 0xFF
    cdef uint32_t nbufs = nin + ((sc >> 8) & 0xFF)
    cdef uint32_t n = nbufs + ((sc >> 4) & 0xF) + (sc & 0xF)
    cdef uint32_t i
    cdef uint64_t ptr, ln
    cdef int k = 0
    cdef const char *args = <const char *>a.buf
    cdef const char *refs = <const char *>r.buf
    if _nvmas == 0 or <size_t>a.len < 24 * <size_t>n or <size_t>r.len < 16 * <size_t>n:
        return 0
    for i in range(nin if to_user else 0, nbufs if to_user else nin):
        if k == REG_PINS_MAX:
            break
        if _ld64(refs + 16 * i + 8) != 0:
            continue  # by reference: not copied
        ptr = _ld64(args + 24 * i)
        ln = _ld64(args + 24 * i + 8)
        if ln == 0 or ln > <uint64_t>(<size_t>-1) or ln > <uint64_t>0xFFFFFFFFFFFFFFFF - ptr:
            continue
        if qda_uaccess_pinned(ptr, <size_t>ln, to_user):
            continue
        k += _pin_registered(ptr, ln, to_user, &regs[k])
    return k


# --- user copies ----------------------------------------------------------------------------
cdef int _user_copy(void *buf, uint64_t uaddr, size_t n, int to_user, bint checked) except? -1:
    """One user copy of ``n`` bytes between ``buf`` and ``uaddr`` (``to_user``: the direction):
    through the known-valid path (pinning a registered mapping that holds ``uaddr`` for the
    copy), or ``checked``: always process_vm_readv/writev (the reference of the fast path)."""
    cdef Py_buffer reg
    cdef int ret, held = 0
    cdef size_t mark
    if n == 0:
        return 0
    if uaddr == 0:
        return -_errno.EFAULT
    if checked:
        with nogil:
            ret = (qda_copy_to_user_checked(uaddr, buf, n) if to_user
                   else qda_copy_from_user_checked(buf, uaddr, n))
        return ret
    mark = qda_uaccess_begin()
    try:
        if _nvmas and not qda_uaccess_pinned(uaddr, n, to_user):
            held = _pin_registered(uaddr, n, to_user, &reg)
        if n >= NOGIL_MIN:
            with nogil:
                ret = qda_copy_to_user(uaddr, buf, n) if to_user else qda_copy_from_user(buf, uaddr, n)
        else:
            ret = qda_copy_to_user(uaddr, buf, n) if to_user else qda_copy_from_user(buf, uaddr, n)
    finally:
        qda_uaccess_end(mark)
        if held:
            PyBuffer_Release(&reg)
    return ret


cdef size_t scope_begin() noexcept nogil:
    return qda_uaccess_begin()


cdef void scope_end(size_t mark) noexcept nogil:
    qda_uaccess_end(mark)


cdef void scope_recheck() noexcept nogil:
    qda_uaccess_recheck()


def guard_recheck():
    """The calling thread's next user copy asks the guarded copy's readiness again (the DSP's
    reference, around skel code: a skel may change the signal handlers while it runs)."""
    qda_uaccess_recheck()


def copy_from_user(dst, uint64_t uaddr, bint checked=False):
    """Fill writable ``dst`` from user address ``uaddr``: 0 or -EFAULT (NULL is EFAULT).
    ``checked``: always through process_vm_readv (the reference of the fast path)."""
    cdef Py_buffer d
    _get(dst, &d, PyBUF_WRITABLE, "dst")
    try:
        return _user_copy(d.buf, uaddr, <size_t>d.len, 0, checked)
    finally:
        PyBuffer_Release(&d)


def copy_to_user(uint64_t uaddr, src, bint checked=False):
    """Write ``src`` to user address ``uaddr``: 0 or -EFAULT (NULL is EFAULT). ``checked``:
    always through process_vm_writev."""
    cdef Py_buffer s
    _get(src, &s, PyBUF_SIMPLE, "src")
    try:
        return _user_copy(s.buf, uaddr, <size_t>s.len, 1, checked)
    finally:
        PyBuffer_Release(&s)


def copy_stats():
    """Process-wide counts of user copies by path: ``memcpy`` (known-valid) and ``checked``,
    of the checked ones those the ``guarded`` copier made (no syscall), and how often the guard
    was asked whether it could take a scope's copies (``guard_checks``) and said no
    (``guard_refused``: someone else's signal handler was in, or the thread blocked the signal)."""
    cdef unsigned long long m = 0, c = 0, refused = 0, checks
    qda_uaccess_stats(&m, &c)
    checks = qda_uaccess_guard_checks(&refused)
    return {"memcpy": m, "checked": c, "guarded": qda_uaccess_guarded_count(),
            "guard_checks": checks, "guard_refused": refused}


def set_guarded_copy(size_t fn, size_t armed=0):
    """Copy the ranges nobody pinned with the C function at address ``fn`` (``int fn(void *dst,
    const void *src, size_t n)``: 0, or -EFAULT for a range that faults, never crashing - the
    DSP runtime's ``qdarpc_guarded_copy``) whenever the C function at ``armed`` (``int
    armed(void)``, the runtime's ``qdarpc_guard_armed``; 0: always) says it can, once per
    user-copy scope and again after skel code ran; or, with ``fn`` 0, through ``process_vm_readv/writev`` again. Returns the
    ``(fn, armed)`` set before (``(0, 0)``: none)."""
    global _guarded, _guarded_armed
    prev = (_guarded, _guarded_armed)
    qda_uaccess_set_guarded(<qda_guarded_copy_fn>fn, <qda_guard_armed_fn>armed if fn else NULL)
    _guarded, _guarded_armed = fn, (armed if fn else 0)
    return prev


def guarded_copy():
    """The ``(fn, armed)`` :func:`set_guarded_copy` set (``(0, 0)``: copies take the syscalls)."""
    return (_guarded, _guarded_armed)


cdef size_t _guarded = 0
cdef size_t _guarded_armed = 0


def pinned(uint64_t uaddr, size_t n, bint write=False):
    """Whether the calling thread has ``[uaddr, uaddr+n)`` pinned as known-valid now."""
    return bool(qda_uaccess_pinned(uaddr, n, write))


def zero(buf, Py_ssize_t lo, Py_ssize_t hi):
    """Zero ``buf[lo:hi]`` (clipped to the buffer) of a writable buffer: one memset, without
    the slice objects a Python slice assignment makes (message buffers are scrubbed per call)."""
    cdef Py_buffer v
    PyObject_GetBuffer(buf, &v, PyBUF_WRITABLE)
    try:
        if lo < 0:
            lo = 0
        if hi > v.len:
            hi = v.len
        if lo < hi:
            memset(<char *>v.buf + lo, 0, <size_t>(hi - lo))
    finally:
        PyBuffer_Release(&v)


def address(buf):
    """Address of a contiguous buffer-protocol object (0 if empty)."""
    cdef Py_buffer v
    PyObject_GetBuffer(buf, &v, PyBUF_SIMPLE)
    try:
        return <size_t>v.buf if v.len else 0
    finally:
        PyBuffer_Release(&v)


# --- typed invoke arguments ---------------------------------------------------------------
cdef object _INVOKE_ARG = None


@cython.freelist(8)
cdef class ArgPins:
    """The ``fastrpc_invoke_args`` descriptors of a typed invoke's ``args`` (see
    ``qda_core.invoke_args.descriptors``: same checks, errors and bytes), holding every buffer.
    As a context manager it pins the copied ones (and the descriptors) on the calling thread for
    the ``with`` block and returns the descriptors; the buffers are released on exit. The
    drivers' typed-invoke lanes use the same steps as cdef methods (``_marshal.pxd``)."""

    def __cinit__(self):
        self.views = NULL
        self.state = NULL
        self.nbufs = 0
        self.dheld = False
        self.pinned = False

    def __init__(self, uint32_t sc, args, ref_type, bufref_type, handle_type):
        self.fill(sc, args, ref_type, bufref_type, handle_type)

    cdef int fill(self, uint32_t sc, object args, object ref_type, object bufref_type,
                  object handle_type) except -1:
        """Check ``args`` against ``sc`` and build the descriptors, holding each buffer (the
        reference's checks and errors, in its order); what an earlier fill held is let go."""
        global _INVOKE_ARG
        cdef Py_ssize_t nin = (sc >> 16) & 0xFF
        cdef Py_ssize_t nbufs = nin + ((sc >> 8) & 0xFF)
        cdef Py_ssize_t n = nbufs + ((sc >> 4) & 0xF) + (sc & 0xF)
        cdef Py_ssize_t i
        if _INVOKE_ARG is None:
            from qda_core.wire import INVOKE_ARG
            _INVOKE_ARG = INVOKE_ARG
        if self.pinned:
            raise RuntimeError("ArgPins is already in use")
        self._free()
        if len(args) != n:
            raise errno_error(_errno.EINVAL, f"scalars {sc:#010x} declare {n} arguments, got {len(args)}")
        self.descs = PyByteArray_FromStringAndSize(NULL, 24 * n)  # bytearray(24 * n), no call
        memset(PyByteArray_AS_STRING(self.descs), 0, 24 * n)
        if nbufs <= ARGPINS_SMALL:
            self.views, self.state = self.small_views, self.small_state
            memset(self.small_state, 0, ARGPINS_SMALL)
        else:
            self.views = <Py_buffer *>calloc(nbufs, sizeof(Py_buffer))
            self.state = <char *>calloc(nbufs, 1)
            if self.views == NULL or self.state == NULL:
                free(self.views)
                free(self.state)
                self.views = self.state = NULL
                raise MemoryError()
        self.nbufs = nbufs
        if type(args) is tuple:
            for i in range(n):
                self._arg(i, (<tuple>args)[i], nin, nbufs, ref_type, bufref_type, handle_type)
        elif type(args) is list:
            # as enumerate() walks a list: each item taken (a strong reference) while the list
            # still has it, since an argument's attributes may run code that changes the list
            i = 0
            while i < PyList_GET_SIZE(args):
                a = (<list>args)[i]
                self._arg(i, a, nin, nbufs, ref_type, bufref_type, handle_type)
                i += 1
        else:
            for i, a in enumerate(args):
                self._arg(i, a, nin, nbufs, ref_type, bufref_type, handle_type)
        return 0

    cdef int _arg(self, Py_ssize_t i, object a, Py_ssize_t nin, Py_ssize_t nbufs, object ref_type,
                  object bufref_type, object handle_type) except -1:
        """Descriptor ``i`` of argument ``a``, holding its buffer."""
        cdef uint64_t *d
        cdef Py_buffer *v
        cdef uint64_t ptr
        cdef long long fd = -1
        cdef int overflow = 0
        cdef int flags
        if i >= nbufs:
            if not isinstance(a, handle_type):
                raise TypeError(f"argument {i} is a handle slot: pass a HandleArg")
            _INVOKE_ARG.pack_into(self.descs, 24 * i, a.offset, a.length, a.fd, 0)
            return 0
        ident = None  # a plain buffer: fd -1
        buf = a
        # A builtin buffer is no BufRef, unless a metaclass's __instancecheck__ says so: skip
        # isinstance(), whose failure also asks the object for its __class__.
        if type(bufref_type) is type and (type(a) is bytes or type(a) is bytearray or type(a) is memoryview):
            pass
        elif isinstance(a, bufref_type):
            if not isinstance(a, ref_type):
                raise TypeError(f"argument {i}: this driver takes {ref_type.__name__}, not {type(a).__name__}")
            ident, buf = a.ident, a.buf
        v = &self.views[i]
        flags = PyBUF_SIMPLE | (PyBUF_WRITABLE if i >= nin else 0)
        try:
            PyObject_GetBuffer(buf, v, flags)
        except (BufferError, TypeError, ValueError):
            mv = memoryview(buf)  # the reference's errors: not a buffer, then read-only out
            if i >= nin and mv.readonly:
                raise TypeError(f"out-buffer {i - nin} must be writable") from None
            raise
        self.state[i] = 1
        ptr = <size_t>v.buf if v.len else 0
        if ident is not None:
            fd = PyLong_AsLongLongAndOverflow(ident, &overflow) if type(ident) is int else 0
            if type(ident) is not int or overflow or not -0x80000000 <= fd <= 0x7FFFFFFF:
                # not a plain int32: struct's conversion and errors, as the reference
                _INVOKE_ARG.pack_into(self.descs, 24 * i, ptr, v.len, ident, 0)
                if ident <= 0:
                    self.state[i] |= 2
                return 0
        d = <uint64_t *>(PyByteArray_AS_STRING(self.descs) + 24 * i)
        d[0] = ptr
        d[1] = <uint64_t>v.len
        (<int32_t *>(d + 2))[0] = <int32_t>fd
        (<uint32_t *>(d + 2))[1] = 0
        if fd <= 0:
            self.state[i] |= 2  # both drivers copy a buffer whose fd is <= 0 (-1, 0)
        return 0

    def __enter__(self):
        self.pin()
        return self.descs

    def __exit__(self, *exc):
        self.unpin()
        return False

    cdef int pin(self) except -1:
        """Pin the copied buffers and the descriptors on the calling thread until :meth:`unpin`."""
        cdef Py_ssize_t i
        if self.pinned:
            raise RuntimeError("ArgPins is already in use")
        # held, so nobody can resize the descriptors under the pin
        PyObject_GetBuffer(self.descs, &self.dview, PyBUF_SIMPLE)
        self.dheld = True
        self.mark = qda_uaccess_begin()
        self.pinned = True
        for i in range(self.nbufs):
            if self.state[i] == 3:
                _pin_view(&self.views[i], 1)
        if self.dview.len:
            qda_uaccess_pin(self.dview.buf, <size_t>self.dview.len, 0)
        return 0

    cdef void unpin(self) noexcept:
        """Undo :meth:`pin` and release every buffer held."""
        if self.pinned:
            qda_uaccess_end(self.mark)
            self.pinned = False
        self._release()

    cdef void _release(self) noexcept:
        cdef Py_ssize_t i
        if self.dheld:
            PyBuffer_Release(&self.dview)
            self.dheld = False
        for i in range(self.nbufs):
            if self.state[i] & 1:
                PyBuffer_Release(&self.views[i])
                self.state[i] = 0

    cdef void _free(self) noexcept:
        if self.views != NULL:
            self._release()
        if self.views != self.small_views:
            free(self.views)
            free(self.state)
        self.views = self.state = NULL
        self.nbufs = 0

    def __dealloc__(self):
        # Only a misuse gets here pinned (a with block never left): drop the pins rather than
        # leave ranges pinned over buffers released now (fewer pins only means checked copies).
        self.unpin()
        self._free()


cdef int _get(object obj, Py_buffer *view, int flags, str name) except -1:
    try:
        PyObject_GetBuffer(obj, view, flags)
    except (BufferError, TypeError, ValueError):
        # same messages as the reference (it inspects a memoryview)
        try:
            mv = memoryview(obj)
        except TypeError:
            raise TypeError(f"{name} must support the buffer protocol, not {type(obj).__name__}") from None
        if not mv.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous buffer") from None
        if flags & PyBUF_WRITABLE and mv.readonly:
            raise TypeError(f"{name} must be a writable buffer") from None
        raise
    return 0


cdef object _error(int ret, qda_marshal_status *st):
    why = st.why.decode() if st.why != NULL else ""
    if st.arg >= 0:
        why = f"arg {st.arg}: {why}"
    return errno_error(ret, why)


def metadata_size(uint32_t n):
    """Bytes of payload metadata for ``n`` arguments: 40n + 384."""
    return qda_metadata_size(n)


cdef uint64_t payload_size_raw(uint32_t sc, const void *a, size_t alen, const void *r, size_t rlen) except? 0:
    """``payload_size`` on raw descriptors (the native lanes): 0 and OSError when invalid."""
    cdef uint64_t size = 0
    cdef qda_marshal_status st
    cdef int ret = qda_payload_size(sc, a, alen, r, rlen, &size, &st)
    if ret < 0:
        raise _error(ret, &st)
    return size


def payload_size(uint32_t sc, args, refs):
    """Validate the descriptors and return the payload size the kernel would allocate."""
    cdef Py_buffer a, r
    _get(args, &a, PyBUF_SIMPLE, "args")
    try:
        _get(refs, &r, PyBUF_SIMPLE, "refs")
        try:
            return payload_size_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len)
        finally:
            PyBuffer_Release(&r)
    finally:
        PyBuffer_Release(&a)


cdef uint64_t plan_raw(uint32_t sc, const void *a, size_t alen, const void *r, size_t rlen,
                       qda_olap *olaps) except? 0:
    """``payload_size_raw`` keeping the plan (``olaps``: REMOTE_SCALARS_MAX_LENGTH entries) for
    :func:`pack_planned_raw`, so a lane that sizes the payload before it has one plans once."""
    cdef uint64_t size = 0
    cdef qda_marshal_status st
    cdef int ret = qda_plan(sc, a, alen, r, rlen, olaps, &size, &st)
    if ret < 0:
        raise _error(ret, &st)
    return size


cdef uint64_t pack_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen, void *pbuf,
                       size_t plen, uint64_t payload_va, uint64_t payload_dev) except? 0:
    """``pack`` on raw buffers (the native lanes); the caller keeps all three alive."""
    cdef qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH]
    cdef uint64_t size = plan_raw(sc, abuf, alen, rbuf, rlen, olaps)
    pack_planned_raw(sc, abuf, alen, rbuf, rlen, olaps, size, pbuf, plen, payload_va, payload_dev)
    return size


cdef int pack_planned_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                          const qda_olap *olaps, uint64_t size, void *pbuf, size_t plen, uint64_t payload_va,
                          uint64_t payload_dev) except -1:
    """``pack_raw`` with :func:`plan_raw`'s plan and size of the same (unchanged) descriptors."""
    cdef Py_buffer a, r
    cdef Py_buffer regs[REG_PINS_MAX]
    cdef qda_marshal_status st
    cdef int ret, k, nreg = 0
    cdef size_t mark
    if not (sc & 0xFFFFFF):  # no arguments: nothing to copy, no pins (the metadata alone)
        ret = qda_pack_planned(sc, abuf, rbuf, olaps, size, pbuf, plen, payload_va, payload_dev, NULL, &st)
    else:
        a.buf, a.len, r.buf, r.len = <void *>abuf, <Py_ssize_t>alen, <void *>rbuf, <Py_ssize_t>rlen
        mark = qda_uaccess_begin()
        try:
            nreg = _pin_registered_args(sc, &a, &r, 0, regs)
            if plen >= NOGIL_MIN:
                with nogil:
                    ret = qda_pack_planned(sc, abuf, rbuf, olaps, size, pbuf, plen, payload_va, payload_dev, NULL,
                                           &st)
            else:
                ret = qda_pack_planned(sc, abuf, rbuf, olaps, size, pbuf, plen, payload_va, payload_dev, NULL, &st)
        finally:
            qda_uaccess_end(mark)
            for k in range(nreg):
                PyBuffer_Release(&regs[k])
    if ret < 0:
        raise _error(ret, &st)
    return 0


cdef int pack_held(uint32_t sc, const void *abuf, const void *rbuf, const qda_olap *olaps, uint64_t size,
                   void *pbuf, size_t plen, uint64_t payload_va, uint64_t payload_dev) except -1:
    """:func:`pack_planned_raw` of descriptors whose every copied buffer is memory the caller
    holds (vouched Py_buffers): plain copies, no pins, no checked path (qda_uaccess_held)."""
    cdef qda_marshal_status st
    cdef int ret
    if plen >= NOGIL_MIN:
        with nogil:
            ret = qda_pack_planned(sc, abuf, rbuf, olaps, size, pbuf, plen, payload_va, payload_dev,
                                   &qda_uaccess_held, &st)
    else:
        ret = qda_pack_planned(sc, abuf, rbuf, olaps, size, pbuf, plen, payload_va, payload_dev, &qda_uaccess_held,
                               &st)
    if ret < 0:
        raise _error(ret, &st)
    return 0


# -- without the GIL (a C caller's route: qda_core._engine.EngineRoute.call_args) -----------------
cdef int plan_nogil(uint32_t sc, const void *a, size_t alen, qda_olap *olaps, uint64_t *size) noexcept nogil:
    """:func:`plan_raw` of copied buffers only (no page list): 0, or ``-errno`` (refused)."""
    cdef qda_marshal_status st
    return qda_plan(sc, a, alen, _NO_REFS, 16 * sc_length(sc), olaps, size, &st)


cdef int pack_user_nogil(uint32_t sc, const void *abuf, const qda_olap *olaps, uint64_t size, void *pbuf,
                         size_t plen, uint64_t payload_va, uint64_t payload_dev) noexcept nogil:
    """:func:`pack_planned_raw` of copied buffers only, their user copies all checked (the
    guarded copy, or the syscalls): 0, or ``-errno`` (``-EFAULT``: a buffer not readable)."""
    cdef qda_marshal_status st
    return qda_pack_planned(sc, abuf, _NO_REFS, olaps, size, pbuf, plen, payload_va, payload_dev, NULL, &st)


cdef int unpack_user_nogil(uint32_t sc, const void *abuf, size_t alen, const void *pbuf, size_t plen,
                           uint64_t payload_va, uint64_t *fds) noexcept nogil:
    """:func:`unpack_raw` of copied buffers only: the fds listed (``fds``: FASTRPC_MAX_FDLIST
    entries), or ``-errno`` (``-EFAULT``: an out-buffer not writable)."""
    cdef qda_marshal_status st
    return qda_unpack(sc, abuf, alen, _NO_REFS, 16 * sc_length(sc), pbuf, plen, payload_va, NULL, fds, &st)


cdef char _NO_REFS[16 * REMOTE_SCALARS_MAX_LENGTH]  # the page list of copied buffers: zeros


def pack(uint32_t sc, args, refs, payload, uint64_t payload_va, uint64_t payload_dev):
    """Write the metadata and copy inline in-buffers into ``payload``; return the packet size.

    The first ``pkt_size`` bytes of ``payload`` are all written: inline out-buffers and
    alignment gaps are zeroed, so a reused buffer needs no clearing.
    """
    cdef Py_buffer a, r, p
    _get(args, &a, PyBUF_SIMPLE, "args")
    try:
        _get(refs, &r, PyBUF_SIMPLE, "refs")
        try:
            _get(payload, &p, PyBUF_WRITABLE, "payload")
            try:
                return pack_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, p.buf, <size_t>p.len,
                                payload_va, payload_dev)
            finally:
                PyBuffer_Release(&p)
        finally:
            PyBuffer_Release(&r)
    finally:
        PyBuffer_Release(&a)


cdef object unpack_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                       const void *pbuf, size_t plen, uint64_t payload_va):
    """``unpack`` on raw buffers (the native lanes); the caller keeps all three alive."""
    cdef Py_buffer a, r
    cdef Py_buffer regs[REG_PINS_MAX]
    cdef uint64_t fds[FASTRPC_MAX_FDLIST]
    cdef qda_marshal_status st
    cdef int ret, k, nreg = 0
    cdef size_t mark
    if not (sc & 0xFFFFFF):  # no arguments: nothing to copy back, no pins (the fdlist alone)
        ret = qda_unpack(sc, abuf, alen, rbuf, rlen, pbuf, plen, payload_va, NULL, fds, &st)
    else:
        a.buf, a.len, r.buf, r.len = <void *>abuf, <Py_ssize_t>alen, <void *>rbuf, <Py_ssize_t>rlen
        mark = qda_uaccess_begin()
        try:
            nreg = _pin_registered_args(sc, &a, &r, 1, regs)
            if plen >= NOGIL_MIN:
                with nogil:
                    ret = qda_unpack(sc, abuf, alen, rbuf, rlen, pbuf, plen, payload_va, NULL, fds, &st)
            else:
                ret = qda_unpack(sc, abuf, alen, rbuf, rlen, pbuf, plen, payload_va, NULL, fds, &st)
        finally:
            qda_uaccess_end(mark)
            for k in range(nreg):
                PyBuffer_Release(&regs[k])
    if ret < 0:
        raise _error(ret, &st)
    if ret == 0:
        return ()
    return tuple([fds[k] for k in range(ret)])


cdef object unpack_held(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                        const void *pbuf, size_t plen, uint64_t payload_va):
    """:func:`unpack_raw` of descriptors whose every copied buffer is memory the caller holds
    (see :func:`pack_held`)."""
    cdef uint64_t fds[FASTRPC_MAX_FDLIST]
    cdef qda_marshal_status st
    cdef int ret, k
    if plen >= NOGIL_MIN:
        with nogil:
            ret = qda_unpack(sc, abuf, alen, rbuf, rlen, pbuf, plen, payload_va, &qda_uaccess_held, fds, &st)
    else:
        ret = qda_unpack(sc, abuf, alen, rbuf, rlen, pbuf, plen, payload_va, &qda_uaccess_held, fds, &st)
    if ret < 0:
        raise _error(ret, &st)
    if ret == 0:
        return ()
    return tuple([fds[k] for k in range(ret)])


def unpack(uint32_t sc, args, refs, payload, uint64_t payload_va):
    """Copy inline out-buffers back to user memory; return the fdlist entries before the first 0."""
    cdef Py_buffer a, r, p
    _get(args, &a, PyBUF_SIMPLE, "args")
    try:
        _get(refs, &r, PyBUF_SIMPLE, "refs")
        try:
            _get(payload, &p, PyBUF_SIMPLE, "payload")
            try:
                return unpack_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, p.buf, <size_t>p.len, payload_va)
            finally:
                PyBuffer_Release(&p)
        finally:
            PyBuffer_Release(&r)
    finally:
        PyBuffer_Release(&a)


def decode(uint32_t sc, payload):
    """The DSP's view: ([(dev_addr, len)] per buffer, [(fd, offset, len, map_addr, map_size)] per handle)."""
    cdef Py_buffer p
    cdef qda_dec_buf bufs[REMOTE_SCALARS_MAX_LENGTH]
    cdef qda_dec_handle hs[32]
    cdef qda_marshal_status st
    cdef int ret
    cdef uint32_t nbufs = ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF)
    cdef uint32_t nh = ((sc >> 4) & 0xF) + (sc & 0xF)
    cdef uint32_t i
    _get(payload, &p, PyBUF_SIMPLE, "payload")
    try:
        ret = qda_decode(sc, p.buf, <size_t>p.len, bufs, REMOTE_SCALARS_MAX_LENGTH, hs, 32, &st)
    finally:
        PyBuffer_Release(&p)
    if ret < 0:
        raise _error(ret, &st)
    return ([(bufs[i].addr, bufs[i].len) for i in range(nbufs)],
            [(hs[i].fd, hs[i].offset, hs[i].len, hs[i].map_addr, hs[i].map_size) for i in range(nh)])


cdef extern from "Python.h":
    Py_buffer *PyMemoryView_GET_BUFFER(object mview)
    object PyMemoryView_FromObject(object obj)


cdef object sub_view(object pv, Py_ssize_t start, Py_ssize_t n, bint readonly):
    """``pv[start:start + n]`` (``pv`` a contiguous 1-D byte memoryview, the range inside it),
    read-only if asked, made as ``memoryview.__getitem__`` and ``toreadonly`` make a slice: a
    new view on the same managed buffer with its pointer, length and shape narrowed (each
    view has its own shape), without the slice object and integers they take per call."""
    cdef Py_buffer *b = PyMemoryView_GET_BUFFER(pv) if type(pv) is memoryview else NULL
    if (b == NULL or b.ndim != 1 or b.itemsize != 1 or (b.format != NULL and strcmp(b.format, "B") != 0)
            or (b.strides != NULL and b.strides[0] != 1) or b.suboffsets != NULL):
        v = memoryview(pv).cast("B")[start:start + n]  # (not a plain byte view: as bytes)
        return v.toreadonly() if readonly else v
    v = PyMemoryView_FromObject(pv)  # a view registered with pv's managed buffer
    b = PyMemoryView_GET_BUFFER(v)
    b.buf = <char *>b.buf + start
    b.len = n
    b.shape[0] = n
    if readonly:
        b.readonly = 1
    return v


cdef int _decode_into(uint32_t sc, const char *p, size_t plen, uint64_t base, qda_dec_buf *bufs,
                      qda_dec_handle *hs, uint64_t *counts) except -1:
    """``qda_decode`` of the payload (its error raised), and ``counts``: the bytes of the
    buffers in the payload (copied), of the in- and of the out-buffers."""
    cdef qda_marshal_status st
    cdef uint32_t nin = (sc >> 16) & 0xFF
    cdef uint32_t nbufs = nin + ((sc >> 8) & 0xFF)
    cdef uint32_t i
    cdef uint64_t off, length
    cdef int ret = qda_decode(sc, p, plen, bufs, REMOTE_SCALARS_MAX_LENGTH, hs, 32, &st)
    if ret < 0:
        raise _error(ret, &st)
    counts[0] = counts[1] = counts[2] = 0
    for i in range(nbufs):
        length = bufs[i].len
        counts[1 if i < nin else 2] += length
        off = bufs[i].addr - base  # wraps below base: then >= plen, so "outside"
        if length and bufs[i].addr >= base and off < plen:
            counts[0] += length
    return 0


cdef object _view_of(object pv, Py_ssize_t pvoff, size_t plen, uint64_t base, const qda_dec_buf *b, bint is_in):
    """Buffer ``b``'s view in the payload ``pv[pvoff:pvoff + plen]`` (at device address
    ``base``), read-only for an in-buffer; a new empty one for an empty buffer; None when the
    buffer lies outside the payload."""
    cdef uint64_t off = b.addr - base
    if b.len == 0:
        return memoryview(b"") if is_in else memoryview(bytearray())
    if b.addr >= base and off <= plen and b.len <= plen - off:
        return sub_view(pv, pvoff + <Py_ssize_t>off, <Py_ssize_t>b.len, is_in)
    return None


cdef list _handles(qda_dec_handle *hs, uint32_t nh):
    return [(hs[i].fd, hs[i].offset, hs[i].len, hs[i].map_addr, hs[i].map_size) for i in range(nh)]


cdef tuple decode_views_raw(uint32_t sc, object pv, Py_ssize_t pvoff, const char *p, size_t plen, uint64_t base,
                            uint64_t *counts):
    """``decode_views`` for the native DSP lane: the payload ``pv[pvoff:pvoff + plen]`` (``pv`` a
    writable 1-D byte memoryview, the payload at device address ``base``) already held, its
    bytes at ``p``. Returns ``(inbufs, outbufs, handles, refs)``: ``refs`` the ``(addr, len)``
    of each buffer outside the payload by index, or None when there is none; then the views are
    the skel's two tuples, else two lists with None in those slots for the caller to fill (its
    views may run Python code, which must never see a tuple change). ``handles`` as ``(fd,
    offset, len, map_addr, map_size)`` tuples (``()`` for none); ``counts`` as
    :func:`_decode_into`."""
    cdef qda_dec_buf bufs[REMOTE_SCALARS_MAX_LENGTH]
    cdef qda_dec_handle hs[32]
    cdef uint32_t nin = (sc >> 16) & 0xFF
    cdef uint32_t nout = (sc >> 8) & 0xFF
    cdef uint32_t nh = ((sc >> 4) & 0xF) + (sc & 0xF)
    cdef uint32_t i
    cdef uint64_t off
    cdef dict refs = None
    _decode_into(sc, p, plen, base, bufs, hs, counts)
    for i in range(nin + nout):
        off = bufs[i].addr - base
        if bufs[i].len and not (bufs[i].addr >= base and off <= plen and bufs[i].len <= plen - off):
            if refs is None:
                refs = {}
            refs[i] = (bufs[i].addr, bufs[i].len)
    if refs is not None:
        views = [_view_of(pv, pvoff, plen, base, &bufs[i], i < nin) for i in range(nin + nout)]
        return views[:nin], views[nin:], _handles(hs, nh) if nh else (), refs
    ins = PyTuple_New(nin) if nin else ()
    outs = PyTuple_New(nout) if nout else ()
    for i in range(nin + nout):
        v = _view_of(pv, pvoff, plen, base, &bufs[i], i < nin)
        Py_INCREF(v)
        PyTuple_SET_ITEM(ins if i < nin else outs, i if i < nin else i - nin, v)
    return ins, outs, _handles(hs, nh) if nh else (), None


cdef int decode_c(uint32_t sc, const void *p, size_t plen, qda_dec_buf *bufs, size_t bufs_cap,
                  qda_dec_handle *handles, size_t handles_cap) noexcept nogil:
    """``qda_decode`` without its error location (the DSP's lane answers a payload that does
    not decode by handing it to the reference, which reports it)."""
    return qda_decode(sc, p, plen, bufs, bufs_cap, handles, handles_cap, NULL)


def decode_views(uint32_t sc, payload, uint64_t base):
    """``decode`` and the buffers inside ``payload`` (at device address ``base``) viewed in it,
    in one pass: ``(bufs, handles, views, copied, nbytes_in, nbytes_out)`` exactly as the
    reference (``qda_core.marshal_ref.decode_views``) returns them."""
    cdef Py_buffer p
    cdef qda_dec_buf bufs[REMOTE_SCALARS_MAX_LENGTH]
    cdef qda_dec_handle hs[32]
    cdef uint64_t counts[3]
    cdef uint32_t nin = (sc >> 16) & 0xFF
    cdef uint32_t nbufs = nin + ((sc >> 8) & 0xFF)
    cdef uint32_t i
    _get(payload, &p, PyBUF_SIMPLE, "payload")
    try:
        pv = payload if type(payload) is memoryview and payload.format == "B" and payload.ndim == 1 \
            else memoryview(payload).cast("B")
        _decode_into(sc, <const char *>p.buf, <size_t>p.len, base, bufs, hs, counts)
        views = [_view_of(pv, 0, <size_t>p.len, base, &bufs[i], i < nin) for i in range(nbufs)]
    finally:
        PyBuffer_Release(&p)
    return ([(bufs[i].addr, bufs[i].len) for i in range(nbufs)], _handles(hs, ((sc >> 4) & 0xF) + (sc & 0xF)),
            views, counts[0], counts[1], counts[2])
