"""Contract of ``Library(default_domain=...)``: the domain that non-domain calls and
``domain == -1`` arguments use on a thread that has not selected one, as upstream builds
libadsprpc (ADSP, 0), libsdsprpc (SDSP, 2) and libcdsprpc (CDSP, 3) from one source
(docs/spec/legacy_fastrpc_api.md §1)."""
import inspect
import threading

import pytest

import libadsprpc_compat as rpc

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0"
SC_ECHO = 0x03010100
BACKENDS = ["accel", "legacy"]
#: The upstream libraries and their default domains (the default SoC has these three DSPs).
FLAVOURS = {"libadsprpc": rpc.ADSP_DOMAIN_ID, "libsdsprpc": rpc.SDSP_DOMAIN_ID, "libcdsprpc": rpc.CDSP_DOMAIN_ID}


@pytest.fixture
def make_lib(soc):
    """Libraries on a fresh SoC, every session closed after the test."""
    libs = []

    def make(*args, **kw):
        lib = rpc.Library(*args, soc=soc, **kw)
        libs.append(lib)
        return lib

    yield make
    for lib in libs:
        lib.close_all()


def current_domain(lib) -> int:
    """DSPRPC_GET_DOMAIN: the calling thread's current domain in ``lib``."""
    get = rpc.remote_rpc_get_domain()
    lib.remote_handle_control(rpc.DSPRPC_GET_DOMAIN, get)
    return get.domain


def user_pds(soc, dom: str) -> list:
    return [p for p in soc.domain(dom).dsp.processes() if p.kind == "user" and p.state == "alive"]


def in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_the_keyword_and_its_default():
    param = inspect.signature(rpc.Library).parameters["default_domain"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert param.default == rpc.DEFAULT_DOMAIN_ID == rpc.CDSP_DOMAIN_ID  # this package is libcdsprpc
    assert "default_domain" in inspect.getdoc(rpc.Library)
    lib = rpc.Library("legacy")
    assert lib.default_domain == rpc.DEFAULT_DOMAIN_ID and "default_domain=cdsp" in repr(lib)


@pytest.mark.parametrize("bad", [-1, 7, 8, 3 + 8, 32, 99, "cdsp", "3", None, 3.0, True, False])
def test_anything_but_a_domain_id_is_a_value_error(bad):
    with pytest.raises(ValueError, match="default_domain"):
        rpc.Library("accel", default_domain=bad)


def test_every_domain_id_is_accepted():
    for dom in rpc.DOMAIN_NAMES:
        assert rpc.Library("legacy", default_domain=dom).default_domain == dom


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_non_domain_calls_use_the_default_domain(make_lib, soc, backend, flavour):
    dom = FLAVOURS[flavour]
    name = rpc.DOMAIN_NAMES[dom]
    lib = make_lib(backend, default_domain=dom)
    assert current_domain(lib) == dom
    h = lib.remote_handle_open(TEST)
    assert set(lib._sessions) == {dom} and len(user_pds(soc, name)) == 1
    out = bytearray(5)
    lib.remote_handle_invoke(h, SC_ECHO, [b"hello", out])
    assert out == b"hello"
    lib.remote_handle_close(h)
    lib.close_all()
    assert user_pds(soc, name) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_minus_one_domain_arguments_use_the_default_domain(make_lib, backend):
    lib = make_lib(backend, default_domain=rpc.SDSP_DOMAIN_ID)
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    try:
        with pytest.raises(rpc.NotInitializedError):  # no session on SDSP yet
            lib.fastrpc_mmap(-1, mem.fd, mem, 0, 4096, rpc.FASTRPC_MAP_FD)
        h = lib.remote_handle_open(TEST)
        lib.fastrpc_mmap(-1, mem.fd, mem, 0, 4096, rpc.FASTRPC_MAP_FD)
        assert mem.fd in lib._sessions[rpc.SDSP_DOMAIN_ID].maps
        lib.fastrpc_munmap(rpc.SDSP_DOMAIN_ID, mem.fd)  # the same mapping, named explicitly
        lib.remote_handle_close(h)
    finally:
        lib.close_all()
        rpc.rpcmem_free(mem)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_thread_that_selected_a_domain_keeps_it(make_lib, backend):
    """Opening a remote_handle64 selects its domain for the thread; other threads still get the
    Library's default, and so does a thread of another Library."""
    lib = make_lib(backend, default_domain=rpc.ADSP_DOMAIN_ID)
    h64 = lib.remote_handle64_open(TEST + rpc.CDSP_DOMAIN)
    assert current_domain(lib) == rpc.CDSP_DOMAIN_ID
    assert in_thread(lambda: current_domain(lib)) == rpc.ADSP_DOMAIN_ID
    lib.remote_handle64_close(h64)
    assert current_domain(lib) == rpc.CDSP_DOMAIN_ID  # closing selects it too


@pytest.mark.parametrize("backend", BACKENDS)
def test_libraries_with_different_defaults_live_side_by_side(make_lib, soc, backend):
    libs = {flavour: make_lib(backend, default_domain=dom) for flavour, dom in FLAVOURS.items()}
    handles = {flavour: lib.remote_handle_open(TEST) for flavour, lib in libs.items()}
    for flavour, lib in libs.items():
        assert set(lib._sessions) == {FLAVOURS[flavour]}
        assert current_domain(lib) == FLAVOURS[flavour]
        lib.remote_handle_close(handles[flavour])
    assert all(len(user_pds(soc, rpc.DOMAIN_NAMES[d])) == 1 for d in FLAVOURS.values())


def test_the_module_level_library_defaults_to_cdsp(soc):
    rpc.use_soc(soc)
    try:
        get = rpc.remote_rpc_get_domain()
        in_thread(lambda: rpc.remote_handle_control(rpc.DSPRPC_GET_DOMAIN, get))
        assert get.domain == rpc.CDSP_DOMAIN_ID
    finally:
        rpc.use_soc(None)
