"""fork() at the qda_core level: the child's default SoC is a fresh one (the parent's is Python
state over shared pages), module locks a parent thread held are free in the child, and the
parent's open files are untouched by whatever the child does."""
import os
import sys
import threading

import qda_core
from qda_core import debug, soc as socmod

sys.path.insert(0, os.path.dirname(__file__))
from child_helpers import in_child  # noqa: E402


def test_child_default_soc_is_fresh_and_parent_file_survives(fd_guard):
    parent_soc = qda_core.default_soc()
    f = qda_core.open_device("cdsp")
    gem = f.gem_create(4096)
    parent_cid = f.client_id

    def child():
        fresh = qda_core.default_soc()
        with qda_core.open_device("cdsp") as g:
            ok = fresh is not parent_soc and g.client_id == 1 and fresh.specs == parent_soc.specs
            g.gem_create(4096)
        return ok

    assert in_child(child)
    assert qda_core.default_soc() is parent_soc
    assert f.client_id == parent_cid and f.lookup(gem) is not None
    f.close()


def test_module_locks_held_by_a_parent_thread_are_free_in_the_child():
    held, release = threading.Event(), threading.Event()

    def holder():
        with debug._lock, socmod._default_lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    try:
        # The child would deadlock here without the at-fork handlers.
        assert in_child(lambda: debug.live_objects() is not None and qda_core.default_soc() is not None, timeout=20)
    finally:
        release.set()
        t.join()


def test_reset_default_builds_a_new_soc():
    old = qda_core.default_soc()
    socmod.reset_default()
    try:
        assert qda_core.default_soc() is not old
    finally:
        with socmod._default_lock:
            socmod._default = old
