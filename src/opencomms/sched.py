"""Scheduling requests a media process makes of the Linux kernel: a short EEVDF slice for a thread (its own, or the
threads of a process it started, such as the node's rtpengine), and whether SCHED_FIFO is permitted at all.

A task with a short slice gets an earlier virtual deadline: woken by a packet or a tick, it preempts a busy task on
its core instead of waiting out that task's slice (Linux >= 6.12 takes `sched_runtime` for SCHED_OTHER; older
kernels accept the call and ignore it). No privilege is needed for a thread of the same user, and the nice value is
kept. Must not: change a policy or priority itself (SCHED_FIFO is asked by the thread's own program: the media
engine thread, rtpengine's `scheduling = fifo`).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["fifo_permitted", "is_fifo", "request_slice", "slice_threads"]

_CAP_SYS_NICE = 23
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}.get(platform.machine()) if sys.platform == "linux" else None


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("policy", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("nice", ctypes.c_int32),
        ("priority", ctypes.c_uint32),
        ("runtime", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("period", ctypes.c_uint64),
    ]


def request_slice(seconds: float, tid: int = 0) -> bool:
    """Ask for a `seconds` scheduling slice (0.1-100 ms) for thread `tid` (0: the calling thread), SCHED_OTHER with
    its nice value kept. False where unsupported or refused (a thread gone meanwhile, another user's)."""
    if _SCHED_SETATTR is None or not 0.0001 <= seconds <= 0.1:
        return False
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)  # PRIO_PROCESS with a thread id: that thread's nice (Linux)
        libc = ctypes.CDLL(None, use_errno=True)
        attr = _SchedAttr(ctypes.sizeof(_SchedAttr), 0, 0, nice, 0, int(seconds * 1e9))
        return int(libc.syscall(_SCHED_SETATTR, tid, ctypes.byref(attr), 0)) == 0
    except (OSError, AttributeError):
        return False


def slice_threads(pid: int, seconds: float) -> int:
    """`request_slice` for every thread of process `pid` as it is now, but those running SCHED_FIFO (a real-time
    thread has no slice); returns how many took it."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return 0
    return sum(request_slice(seconds, tid) for tid in tids if not is_fifo(tid))


def fifo_permitted(priority: int) -> bool:
    """Whether a process started by this one may run SCHED_FIFO at `priority`: root, CAP_SYS_NICE, or an
    RLIMIT_RTPRIO that high (asked without permission, rtpengine logs an error per thread and runs normally)."""
    if sys.platform != "linux" or not 1 <= priority <= 99:
        return False
    if os.geteuid() == 0:
        return True
    try:
        import resource

        if resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= priority:
            return True
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except (OSError, ValueError, ImportError):
        pass
    return False


def is_fifo(tid: int) -> bool:
    """Thread `tid` runs SCHED_FIFO (False when it is gone)."""
    try:
        return os.sched_getscheduler(tid) == os.SCHED_FIFO
    except OSError:
        return False
