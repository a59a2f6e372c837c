# cython: language_level=3
"""C-ABI facts of FastRPC, read from qdarpc's C headers (one source of truth).

* every AEE code of ``AEEStdErr.h`` as a module-level int (``AEE_EBADPARM`` ...), from the
  ``QDA_AEE_CODES`` list in ``csrc/include/qdarpc/aee_err.h``; ``DSP_AEE_EOFFSET``;
* :func:`errno_to_aee` (the user library's ``convert_kernel_to_user_error``),
  :func:`aee_to_dsp`, :func:`aee_name`, :func:`is_dsp_error`;
* the ``REMOTE_SCALARS_*`` macros of ``remote_abi.h`` as functions;
* ``sizeof_*`` and :data:`OFFSETOF` of the kernel<->DSP wire structs and the user ABI types.

AEE codes are accepted as Python ints in ``[-2**31, 2**32)``: a DSP-form code may be given as
the int32 retval (negative) or as its 32-bit pattern (``0x8000040e``).
"""
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef extern from *:
    const char *QDARPC_VERSION

__version__ = QDARPC_VERSION.decode()

# --- AEE codes ----------------------------------------------------------------------------

cdef extern from "qdarpc/aee_err.h":
    uint32_t C_DSP_AEE_EOFFSET "DSP_AEE_EOFFSET"
    int C_AEE_CODE_MAX "QDA_AEE_CODE_MAX"
    struct qda_aee_entry:
        const char *name
        const char *desc
        int32_t value
        uint32_t flags
    const qda_aee_entry qda_aee_table[]
    const unsigned qda_aee_count
    int qda_errno_to_aee(int err)
    uint32_t qda_aee_to_dsp(int code)
    int qda_aee_is_dsp(uint32_t code)
    const qda_aee_entry *qda_aee_find(uint32_t code)

DSP_AEE_EOFFSET = C_DSP_AEE_EOFFSET
AEE_CODE_MAX = C_AEE_CODE_MAX


def _aee_rows():
    cdef unsigned i
    return tuple(
        (qda_aee_table[i].name.decode(), qda_aee_table[i].value, qda_aee_table[i].desc.decode())
        for i in range(qda_aee_count)
    )


AEE_TABLE = _aee_rows()
"""Every AEE code as ``(name, bare value, description)``, in the header's lookup order."""

globals().update({_name: _value for _name, _value, _desc in AEE_TABLE})


cdef uint32_t _code32(object code) except? 0xFFFFFFFF:
    """A code as its 32-bit pattern; ValueError outside int32 + uint32 range."""
    if not isinstance(code, int):
        raise TypeError(f"AEE code must be an int, not {type(code).__name__}")
    if not (-0x8000_0000 <= code < 0x1_0000_0000):
        raise ValueError(f"AEE code {code:#x} does not fit in 32 bits")
    return <uint32_t>(code & 0xFFFF_FFFF)


def errno_to_aee(err):
    """The AEE code the FastRPC user library makes of a failed ioctl's errno.

    Follows ``convert_kernel_to_user_error`` (docs/spec/legacy_fastrpc_api.md §5.2): an errno in 1..135 that the
    table does not name (ENOENT, EBUSY included) gives ``AEE_ERPC``; the library does not
    convert 0 or errnos above 135, which give ``AEE_EUNKNOWN`` (-1). A kernel-style negative
    errno is accepted too.
    """
    if not isinstance(err, int):
        raise TypeError(f"errno must be an int, not {type(err).__name__}")
    if not (-0x7FFF_FFFF <= err <= 0x7FFF_FFFF):
        raise ValueError(f"errno {err} is out of range")
    return qda_errno_to_aee(<int>err)


def aee_to_dsp(code):
    """The 32-bit value an AEE code has when the DSP returns it (``DSP_AEE_EOFFSET + code``).

    ``AEE_ENOSUCH`` (39), ``AEE_EINTERRUPTED`` (46), ``AEE_ECONNRESET`` (104) and
    ``AEE_EWOULDBLOCK`` (516) have no offset on either side and come back unchanged, as do
    0, negative codes, codes above 1024 and codes already in DSP form. Bare 104 is
    ``AEE_ECONNRESET``: the DSP form of ``AEE_ENORPCMEMORY`` (0x80000468) cannot be made here.
    """
    cdef uint32_t c = _code32(code)
    return qda_aee_to_dsp(<int>c)


def aee_to_retval(code):
    """:func:`aee_to_dsp` as the signed int32 a ``retval`` field / ioctl return carries."""
    cdef uint32_t c = aee_to_dsp(code)
    return <int32_t>c


def is_dsp_error(code):
    """True if ``code`` is in the DSP form ``DSP_AEE_EOFFSET + 1..1024`` (int32 or 32-bit).

    The no-offset codes (39, 46, 104, 516) may come from either side and give False.
    """
    return bool(qda_aee_is_dsp(_code32(code)))


def aee_name(code):
    """The name of a bare or DSP-form AEE code (``14`` and ``0x8000040e`` → ``"AEE_EBADPARM"``).

    Returns None if no AEE code has this value. See ``qda_aee_name()`` in aee_err.h for how
    shared values are resolved (bare 104 → ``AEE_ECONNRESET``, 0x80000468 → ``AEE_ENORPCMEMORY``).
    """
    cdef const qda_aee_entry *e = qda_aee_find(_code32(code))
    return None if e == NULL else e.name.decode()


def aee_describe(code):
    """The one-line description of a bare or DSP-form AEE code, or None if unknown."""
    cdef const qda_aee_entry *e = qda_aee_find(_code32(code))
    return None if e == NULL else e.desc.decode()


# --- scalars ------------------------------------------------------------------------------

cdef extern from "qdarpc/remote_abi.h":
    uint32_t c_attr "REMOTE_SCALARS_METHOD_ATTR"(uint32_t sc)
    uint32_t c_method "REMOTE_SCALARS_METHOD"(uint32_t sc)
    uint32_t c_inbufs "REMOTE_SCALARS_INBUFS"(uint32_t sc)
    uint32_t c_outbufs "REMOTE_SCALARS_OUTBUFS"(uint32_t sc)
    uint32_t c_inhandles "REMOTE_SCALARS_INHANDLES"(uint32_t sc)
    uint32_t c_outhandles "REMOTE_SCALARS_OUTHANDLES"(uint32_t sc)
    uint32_t c_length "REMOTE_SCALARS_LENGTH"(uint32_t sc)
    uint32_t c_makex "REMOTE_SCALARS_MAKEX"(uint32_t attr, uint32_t method, uint32_t nin,
                                            uint32_t nout, uint32_t noin, uint32_t noout)
    uint32_t c_make "REMOTE_SCALARS_MAKE"(uint32_t method, uint32_t nin, uint32_t nout)
    int C_SCALARS_MAX_LENGTH "REMOTE_SCALARS_MAX_LENGTH"

    ctypedef struct remote_buf:
        void *pv
        size_t nLen
    ctypedef struct remote_dma_handle:
        int32_t fd
        uint32_t offset
    ctypedef union remote_arg:
        remote_buf buf
        uint32_t h
        uint64_t h64
        remote_dma_handle dma

REMOTE_SCALARS_MAX_LENGTH = C_SCALARS_MAX_LENGTH

# The scalars word is a u32: arguments outside 0..2**32-1 raise OverflowError.

cpdef uint32_t REMOTE_SCALARS_METHOD_ATTR(uint32_t sc) noexcept:
    """Bits 31..29: method attribute."""
    return c_attr(sc)


cpdef uint32_t REMOTE_SCALARS_METHOD(uint32_t sc) noexcept:
    """Bits 28..24: method index."""
    return c_method(sc)


cpdef uint32_t REMOTE_SCALARS_INBUFS(uint32_t sc) noexcept:
    """Bits 23..16: number of input buffers."""
    return c_inbufs(sc)


cpdef uint32_t REMOTE_SCALARS_OUTBUFS(uint32_t sc) noexcept:
    """Bits 15..8: number of output buffers."""
    return c_outbufs(sc)


cpdef uint32_t REMOTE_SCALARS_INHANDLES(uint32_t sc) noexcept:
    """Bits 7..4: number of input handles."""
    return c_inhandles(sc)


cpdef uint32_t REMOTE_SCALARS_OUTHANDLES(uint32_t sc) noexcept:
    """Bits 3..0: number of output handles."""
    return c_outhandles(sc)


cpdef uint32_t REMOTE_SCALARS_LENGTH(uint32_t sc) noexcept:
    """Total number of arguments (the four counts summed)."""
    return c_length(sc)


cpdef uint32_t REMOTE_SCALARS_MAKEX(uint32_t attr, uint32_t method, uint32_t nin, uint32_t nout,
                                    uint32_t noin, uint32_t noout) noexcept:
    """Pack a scalars word; each field is masked to its width, as the C macro does."""
    return c_makex(attr, method, nin, nout, noin, noout)


cpdef uint32_t REMOTE_SCALARS_MAKE(uint32_t method, uint32_t nin, uint32_t nout) noexcept:
    """``REMOTE_SCALARS_MAKEX(0, method, nin, nout, 0, 0)``."""
    return c_make(method, nin, nout)


# --- wire structs -------------------------------------------------------------------------

cdef extern from "qdarpc/fastrpc_wire.h":
    struct fastrpc_msg:
        pass
    struct fastrpc_invoke_rsp:
        pass
    struct fastrpc_invoke_args:
        pass
    struct fastrpc_phy_page:
        pass
    struct fastrpc_invoke_buf:
        pass
    struct fastrpc_buf_arg:
        pass
    struct fastrpc_dma_arg:
        pass
    union fastrpc_remote_arg:
        pass

cdef extern from *:
    """
    #include <stddef.h>
    #include "qdarpc/fastrpc_wire.h"
    #include "qdarpc/remote_abi.h"

    struct qda_field_fact { const char *type; const char *field; size_t offset; size_t size; };
    #define QDA_FIELD(T, tname, f) { tname, #f, offsetof(T, f), sizeof(((T *)0)->f) }
    static const struct qda_field_fact qda_field_facts[] = {
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", client_id),
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", tid),
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", ctx),
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", handle),
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", sc),
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", addr),
        QDA_FIELD(struct fastrpc_msg, "fastrpc_msg", size),
        QDA_FIELD(struct fastrpc_invoke_rsp, "fastrpc_invoke_rsp", ctx),
        QDA_FIELD(struct fastrpc_invoke_rsp, "fastrpc_invoke_rsp", retval),
        QDA_FIELD(struct fastrpc_invoke_args, "fastrpc_invoke_args", ptr),
        QDA_FIELD(struct fastrpc_invoke_args, "fastrpc_invoke_args", length),
        QDA_FIELD(struct fastrpc_invoke_args, "fastrpc_invoke_args", fd),
        QDA_FIELD(struct fastrpc_invoke_args, "fastrpc_invoke_args", attr),
        QDA_FIELD(struct fastrpc_phy_page, "fastrpc_phy_page", addr),
        QDA_FIELD(struct fastrpc_phy_page, "fastrpc_phy_page", size),
        QDA_FIELD(struct fastrpc_invoke_buf, "fastrpc_invoke_buf", num),
        QDA_FIELD(struct fastrpc_invoke_buf, "fastrpc_invoke_buf", pgidx),
        QDA_FIELD(struct fastrpc_buf_arg, "fastrpc_buf_arg", pv),
        QDA_FIELD(struct fastrpc_buf_arg, "fastrpc_buf_arg", len),
        QDA_FIELD(struct fastrpc_dma_arg, "fastrpc_dma_arg", fd),
        QDA_FIELD(struct fastrpc_dma_arg, "fastrpc_dma_arg", offset),
        QDA_FIELD(struct fastrpc_dma_arg, "fastrpc_dma_arg", len),
        QDA_FIELD(remote_buf, "remote_buf", pv),
        QDA_FIELD(remote_buf, "remote_buf", nLen),
        QDA_FIELD(remote_dma_handle, "remote_dma_handle", fd),
        QDA_FIELD(remote_dma_handle, "remote_dma_handle", offset),
    };
    #undef QDA_FIELD
    static const size_t qda_field_fact_count = sizeof(qda_field_facts) / sizeof(qda_field_facts[0]);
    """
    struct qda_field_fact:
        const char *type
        const char *field
        size_t offset
        size_t size
    const qda_field_fact qda_field_facts[]
    const size_t qda_field_fact_count

sizeof_fastrpc_msg = sizeof(fastrpc_msg)
sizeof_fastrpc_invoke_rsp = sizeof(fastrpc_invoke_rsp)
sizeof_fastrpc_invoke_args = sizeof(fastrpc_invoke_args)
sizeof_fastrpc_phy_page = sizeof(fastrpc_phy_page)
sizeof_fastrpc_invoke_buf = sizeof(fastrpc_invoke_buf)
sizeof_fastrpc_buf_arg = sizeof(fastrpc_buf_arg)
sizeof_fastrpc_dma_arg = sizeof(fastrpc_dma_arg)
sizeof_fastrpc_remote_arg = sizeof(fastrpc_remote_arg)
sizeof_remote_buf = sizeof(remote_buf)
sizeof_remote_dma_handle = sizeof(remote_dma_handle)
sizeof_remote_arg = sizeof(remote_arg)


def _field_facts():
    cdef size_t i
    offsets: dict = {}
    sizes: dict = {}
    for i in range(qda_field_fact_count):
        t = qda_field_facts[i].type.decode()
        f = qda_field_facts[i].field.decode()
        offsets.setdefault(t, {})[f] = qda_field_facts[i].offset
        sizes.setdefault(t, {})[f] = qda_field_facts[i].size
    return offsets, sizes


OFFSETOF, FIELD_SIZEOF = _field_facts()
"""``OFFSETOF[struct][field]`` and ``FIELD_SIZEOF[struct][field]`` in bytes, from the C headers."""
