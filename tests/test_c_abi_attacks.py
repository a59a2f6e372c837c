"""Attacks on the C ABI library (docs/c_abi.md): C programs that hand it hostile pointers, lengths
and handles, call it from dying threads, load its flavours side by side; each must get a code,
never a crash, and leave the program's own state (signals, other library instances) alone."""
from __future__ import annotations

import pathlib
import sys

import pytest

import libadsprpc_compat as rpc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cc_helpers import compile_c, needs_c_abi, run_c  # noqa: E402

pytestmark = needs_c_abi

EFAULT = 14


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    d = tmp_path_factory.mktemp("abi_attacks")
    return {
        "attacks": compile_c("abi/attacks.c", d / "attacks"),
        "flavours": compile_c("abi/flavours.c", d / "flavours", link_abi=False, flags=["-ldl"]),
        "closed_stdio": compile_c("abi/closed_stdio.c", d / "closed_stdio"),
        "fork_start": compile_c("abi/fork_start.c", d / "fork_start"),
        "fork_storm": compile_c("abi/fork_storm.c", d / "fork_storm"),
        "exit_join": compile_c("abi/exit_join.c", d / "exit_join"),
        "guard_signals": compile_c("abi/guard_signals.c", d / "guard_signals"),
    }


def _lines(stdout: str) -> dict[str, str]:
    assert stdout.endswith("done\n"), stdout
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


def _attacks_answers() -> dict[str, str]:
    bad = f"0x{rpc.AEE_EBADPARM:x}"
    return {
        "open": "0x0/0", "ok": "0x0/0", "ok_out": "10",
        # pra[] read with the checked copy: an entry on an inaccessible page is EFAULT ...
        "pra_straddles_inaccessible": f"{bad}/{EFAULT}",
        # ... and an unaligned one is fine
        "pra_unaligned": "0x0/0", "pra_unaligned_out": "10",
        "buf_straddles_inaccessible": f"{bad}/{EFAULT}",
        # a buffer starting in rpcmem whose length wraps the address space overruns its range
        # like any other (the library refuses it; the wrapped end once passed for a fit)
        "rpcmem_len_wraps": f"{bad}/0", "rpcmem_len_size_max": f"{bad}/0",
        "rpcmem_overrun": f"{bad}/0",
        "buf_top_of_memory": f"{bad}/{EFAULT}",
        "sc_max_counts_null_pra": f"{bad}/0", "sc_max_counts_short_pra_fails": "1",
        "rpcmem_use_after_free": f"{bad}/{EFAULT}", "rpcmem_to_fd_after_free": "-1",
        "close": "0x0/0", "invoke_after_close": f"0x{rpc.AEE_EINVHANDLE:x}/0",
        "name_straddles_inaccessible": f"{bad}/{EFAULT}",
        # a thread whose first call is in its own TLS destructor gets a thread state then
        "calls_in_tls_destructors": "4",
        # the interpreter the library started is the program's guest: no handler installed
        "signal_dispositions_changed": "0", "sigint_handler_ran": "1", "sigpipe_handler_ran": "1",
    }


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_hostile_pointers_and_lengths_get_codes(progs, backend):
    res = run_c([progs["attacks"]], backend=backend, timeout=60)
    assert res.returncode == 0, res.stderr
    assert _lines(res.stdout) == _attacks_answers()
    assert "internal error" not in res.stderr


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_hostile_pointers_to_a_native_skel_get_the_same_codes(progs, backend, tmp_path):
    """The same attacks on the calculator as a native skel: the DSP runtime is loaded (its crash
    guard's four handlers are the one change to the program's signals), and the kernel's user
    copies of the program's pointers take the runtime's guarded copy - the same codes and errnos
    as through process_vm_readv/writev (QDARPC_UACCESS=checked) and as on the Python skel."""
    from cc_helpers import compile_skel

    compile_skel("calculator", tmp_path / "libcalculator_skel.so")  # (its sum: 1000000 more)
    want = {**_attacks_answers(), "signal_dispositions_changed": "4", "ok_out": "1000010",
            "pra_unaligned_out": "1000010"}
    del want["calls_in_tls_destructors"]  # (counts the calls whose sum is the built-in one's)
    for uaccess in ("", "checked"):
        res = run_c([progs["attacks"]], backend=backend, timeout=60, DSP_LIBRARY_PATH=tmp_path,
                    QDARPC_UACCESS=uaccess)
        assert res.returncode == 0, res.stderr
        got = _lines(res.stdout)
        assert got.pop("calls_in_tls_destructors") == "0"
        assert got == want, uaccess
        assert "internal error" not in res.stderr


@pytest.mark.parametrize("mode", ["reporter", "default", "blocked", "chain"])
def test_fault_signals_changed_after_the_runtime_loaded_still_give_codes(progs, mode, tmp_path):
    """The guarded copy is only as good as the handlers in place when it runs: a program that,
    after its first native skel call, installs a crash reporter (not chaining), puts SIG_DFL
    back, blocks SIGSEGV/SIGBUS, or chains to the guard from a handler that runs with the signal
    blocked, still gets EFAULT for a bad in- or out-buffer (its copies take the syscalls while
    the guard could not catch their fault), never its own handler run or a death by signal; and
    a skel fault that reaches the guard through the chaining handler leaves the thread's signal
    mask as it was (the next fault would otherwise kill the process)."""
    from cc_helpers import compile_skel

    compile_skel("calculator", tmp_path / "libcalculator_skel.so")
    compile_skel("crashy", tmp_path / "libcrashy_skel.so")
    res = run_c([progs["guard_signals"], mode], timeout=60, DSP_LIBRARY_PATH=tmp_path)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    bad = f"0x{rpc.AEE_EBADPARM:x}/{EFAULT}"
    want = {"open": "0x0/0", "first": "0x0/0", "bad": bad, "bad_out": bad, "good": "0x0/0", "sum": "1000010",
            "close": "0x0/0"}
    if mode == "chain":
        want.update({"crashy": "0x0/0", "crash": "0x8000040d/0", "segv_blocked_after": "0"})
    assert _lines(res.stdout) == want
    assert "crash reporter ran" not in res.stderr


def test_flavours_are_separate_library_instances(progs):
    """As upstream's: each library checks a handle64 against its own list, so a handle of
    libadsprpc is AEE_EINVHANDLE to libcdsprpc and libsdsprpc (and cannot be closed there),
    and stays good in libadsprpc. Then dlopen/dlclose cycles of all three."""
    res = run_c([progs["flavours"], 5], timeout=60)
    assert res.returncode == 0, res.stderr
    inval = rpc.AEE_EINVHANDLE
    assert _lines(res.stdout) == {
        "adsprpc_open": "0", "cdsprpc_open": "0", "adsprpc_invoke_own": "6",
        "cdsprpc_invoke_adsprpc_handle": str(-inval), "sdsprpc_invoke_adsprpc_handle": str(-inval),
        "adsprpc_invoke_cdsprpc_handle": str(-inval),
        "cdsprpc_control_adsprpc_handle": str(inval), "cdsprpc_close_adsprpc_handle": str(inval),
        "adsprpc_invoke_own_after": "6", "adsprpc_close_own": "0", "adsprpc_close_again": str(inval),
        "cdsprpc_invoke_own": "6", "cdsprpc_close_own": "0", "dlopen_cycles": "5",
    }


def test_fork_after_another_thread_started_the_interpreter(progs):
    """The thread whose first call started the interpreter has exited; the main thread forks:
    the child's first call works (the forking thread keeps its thread state in the child)."""
    res = run_c([progs["fork_start"], "after"], timeout=60)
    assert (res.returncode, res.stdout) == (0, "ok 0x0\nchild exit 0\n"), res.stderr


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_fork_while_other_threads_allocate_and_invoke(progs, backend):
    """Whatever lock a thread of the parent holds at fork() (the C ABI's own allocation table
    among them), the child allocates, opens, invokes and closes on its own emulator."""
    res = run_c([progs["fork_storm"], 4, 12], backend=backend, timeout=120)
    assert (res.returncode, res.stdout) == (0, "bad children 0\n"), res.stderr


def test_fork_during_another_threads_first_call_never_hangs_the_child(progs):
    """Forked while another thread starts the interpreter or imports the package: the child
    inherits it half-made, so it has no emulator - a code and one line on stderr, no hang."""
    res = run_c([progs["fork_start"], "during"], timeout=60)
    assert res.returncode == 0, res.stderr
    none = f"code 0x{rpc.AEE_ECONNREFUSED:x}\nchild exit 0\n"
    assert res.stdout in ("ok 0x0\nchild exit 0\n", none), res.stdout + res.stderr
    if res.stdout == none:
        assert res.stderr.count("forked while another thread was starting the emulator") == 1


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_exit_handlers_that_join_calling_threads_finish(progs, backend):
    """The program's exit handler joins worker threads that are inside calls: the library's
    exit hook does not keep the GIL, the workers' calls end and their later ones are refused
    (AEE_ECONNREFUSED, as with no emulator) - the process exits instead of hanging."""
    res = run_c([progs["exit_join"]], backend=backend, timeout=30)
    assert (res.returncode, res.stdout) == (0, "joined 3\n"), res.stderr
    assert "internal error" not in res.stderr


def test_a_program_with_stdout_and_stderr_closed_gets_its_data_through(progs):
    res = run_c([progs["closed_stdio"]], timeout=60)
    assert res.returncode == 0, res.stdout
    assert res.stdout == "bad 0 of 20\n"
