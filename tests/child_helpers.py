"""Forked children for tests: run a function in one and get its result back, so a crash, an
exception or a hang in the child fails the calling test instead of killing the test run."""
import os
import pickle
import select
import signal
import time
import traceback

import pytest


def in_child(fn, timeout: float = 30.0):
    """Run ``fn()`` in a forked child and return its (pickled) result. The child always leaves
    with ``os._exit``; an exception in it, a crash or a hang fails the calling test."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                out = ("ok", fn())
            except BaseException as exc:  # reported to the parent
                out = ("error", "".join(traceback.format_exception(exc)))
            data = pickle.dumps(out)
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    data = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"child {pid} hung for {timeout} s")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child died: status {status:#x}"
    kind, value = pickle.loads(bytes(data))
    if kind == "error":
        pytest.fail(f"child failed:\n{value}")
    return value
