"""``python -m smc bench-console``: what hostile queries cost the server through the Explore page's SQL console.

Each query of :data:`QUERIES` runs once through :func:`smc.analysis.console.run_console` (or another function of
its signature: the bench measured the console before it had workers that way), with the console's own time limit.
Per query:
- server_mb: the peak resident memory of this process above its idle level just before the query (VmHWM reset
  through /proc/self/clear_refs, then read against VmRSS);
- worker_mb: the peak resident memory of any process started for the query (the console's workers; sampled every
  20 ms from /proc, so a worker killed between samples shows its last sample);
- seconds, and seconds past the time limit (0 when it ended before the limit).
Targets: at most 1 GB above idle in the server and at most 1 s past the time limit.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from smc import settings
from smc.analysis import console
from smc.store.db import Database

SERVER_TARGET_MB = 1024
PAST_LIMIT_TARGET_S = 1.0
SAMPLE_S = 0.02
ORDINARY = "SELECT count(*) AS n FROM subjects"
ORDINARY_RUNS = 5

# (name, statement): the red-team pass's three, then ours
QUERIES: tuple[tuple[str, str], ...] = (
    ("2 GB string", "SELECT length(repeat('x', 2000000000)) AS n"),
    ("300 × 10 MB strings", "SELECT repeat('x', 10000000) AS s FROM range(300)"),
    ("list of 400 M", "SELECT length(list(range(400000000))) AS n"),
    ("levenshtein of 150 k", "SELECT levenshtein(repeat('a', 150000), repeat('b', 150000)) AS d"),
    ("cross join 3·10¹⁰", "SELECT count(*) AS n FROM range(200000) a, range(150000) b WHERE a.range + b.range >= 0"),
    ("wide rows, 1 GB result", "SELECT repeat('x', 100000) AS s, range AS i FROM range(10000)"),
    ("string_agg of 10 GB", "SELECT length(string_agg(repeat('x', 1000), ',')) AS n FROM range(10000000)"),
    ("hash join 10⁸ × 10⁸", "SELECT count(*) AS n FROM range(100000000) a JOIN range(100000000) b USING (range)"),
)


@dataclass(frozen=True)
class Measured:
    name: str
    status: str
    seconds: float
    past_limit_s: float
    server_mb: float
    worker_mb: float | None
    message: str


def run_console_bench(db_path: str | Path, run: Callable | None = None, only: Iterable[str] | None = None) -> str:
    """A markdown table of :data:`QUERIES` (or the ones named in ``only``) run through ``run`` (default
    :func:`smc.analysis.console.run_console`) on the database at ``db_path``, then the median time of an ordinary
    query."""
    run = run or console.run_console
    db = Database(db_path)
    run(db, ORDINARY)  # start what a first query starts (the fork server), apart from the measures
    names = set(only) if only is not None else None
    rows = [measure(run, db, name, text) for name, text in QUERIES if names is None or name in names]
    ordinary = []
    for _ in range(ORDINARY_RUNS):
        started = time.perf_counter()
        run(db, ORDINARY)
        ordinary.append(time.perf_counter() - started)
    return table(rows, statistics.median(ordinary))


def measure(run: Callable, db: Database, name: str, text: str) -> Measured:
    limit = settings.CONSOLE_TIME_LIMIT_S
    idle = _status_mb("self", "VmRSS")
    _reset_peak()
    sampler = _WorkerSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        result = run(db, text)
    finally:
        seconds = time.perf_counter() - started
        worker_mb = sampler.stop()
    return Measured(name, result.status, seconds, max(0.0, seconds - limit), _status_mb("self", "VmHWM") - idle,
                    worker_mb, result.message)


def table(rows: list[Measured], ordinary_s: float) -> str:
    limit = settings.CONSOLE_TIME_LIMIT_S
    lines = [f"Time limit {limit:g} s; targets: server ≤ {SERVER_TARGET_MB:,} MB above idle, ≤ "
             f"{PAST_LIMIT_TARGET_S:g} s past the limit (✗ marks a miss).", "",
             "| query | status | s | s past limit | server MB above idle | worker peak MB | message |",
             "|---|---|---:|---:|---:|---:|---|"]
    for m in rows:
        server = f"{m.server_mb:,.0f}" + (" ✗" if m.server_mb > SERVER_TARGET_MB else "")
        past = f"{m.past_limit_s:.2f}" + (" ✗" if m.past_limit_s > PAST_LIMIT_TARGET_S else "")
        worker = "—" if m.worker_mb is None else f"{m.worker_mb:,.0f}"
        message = m.message.replace("|", "\\|").splitlines()[0][:90] if m.message else ""
        lines.append(f"| {m.name} | {m.status} | {m.seconds:.2f} | {past} | {server} | {worker} | {message} |")
    lines += ["", f"An ordinary query (`{ORDINARY}`), median of {ORDINARY_RUNS}: {ordinary_s * 1000:,.0f} ms."]
    return "\n".join(lines)


def _reset_peak() -> None:
    """Start VmHWM again from the current resident size (Linux: 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _status_mb(pid: str | int, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:  # the process is gone
        pass
    return 0.0


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


class _WorkerSampler:
    """The highest VmHWM of any process below this one that was not there when the sampler started."""

    def __init__(self) -> None:
        self._before = _descendants(os.getpid())
        self._done = threading.Event()
        self._peak: float | None = None
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float | None:
        self._done.set()
        self._thread.join()
        return self._peak

    def _sample(self) -> None:
        while True:
            for pid in _descendants(os.getpid()) - self._before:
                peak = _status_mb(pid, "VmHWM")
                if peak:
                    self._peak = max(self._peak or 0.0, peak)
            if self._done.wait(SAMPLE_S):
                return
