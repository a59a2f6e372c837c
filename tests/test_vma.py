"""find_vma: registered emulator mappings, reuse of an address, and the /proc/self/maps fallback."""
import mmap

from qda_core.mem import vma


class Owner:
    pass


def test_reused_address_keeps_the_index_consistent():
    a, b = Owner(), Owner()
    vma.register(a, 0x7000_0000_0000, 0x2000, (1, 2))
    vma.register(b, 0x7000_0000_0000, 0x4000, (1, 3))  # same start again before `a` is collected
    assert vma.find_vma_start(0x7000_0000_3000) == 0x7000_0000_0000
    del a
    assert vma.find_vma_start(0x7000_0000_3000) == 0x7000_0000_0000  # b's entry survives
    del b
    assert vma.find_vma_start(0x7000_0000_3000) is None


def test_fallback_reads_proc_maps():
    m = mmap.mmap(-1, 3 * mmap.PAGESIZE)
    import ctypes

    pin = ctypes.c_char.from_buffer(m)
    start = ctypes.addressof(pin)
    assert vma.find_vma_start(start + 2 * mmap.PAGESIZE + 5) is not None
    assert vma.find_vma_start(start + 2 * mmap.PAGESIZE + 5) <= start
    del pin
    m.close()
