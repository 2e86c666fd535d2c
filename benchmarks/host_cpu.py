"""What the host did during a benchmark run: CPU time of a process tree, of reaped children
and of the whole machine, the CPU model and the load average.

Why a module of its own: the ingest and association benchmarks both count a server's CPU
(``storescp --fork`` children included) and print the host beside their figures; on a
shared 2-core machine those say more about a run than its wall clock.
"""

from __future__ import annotations

import os
import platform
import resource


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (``/proc/stat``).

    Why: the servers share the cores with the senders and with the kernel's write-back
    threads, which neither server's own count includes; the busy fraction says whether a
    run was bound by the machine's CPU.
    """
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (the finished storescu senders)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants, including reaped children (``--fork``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:  # exited meanwhile: its time is in its parent's reaped-children count
            continue
        total += int(fields[11]) + int(fields[12])
        if current == pid:
            total += int(fields[13]) + int(fields[14])
    return total / tick


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
