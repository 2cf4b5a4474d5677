"""The SQL console's worker: one statement in a process of its own, started by :mod:`smc.analysis.console`.

The server cannot stop DuckDB inside a long scalar function (``repeat('x', 2000000000)``) or while it converts a
result, and a query's memory is the server's memory. Here it is neither. A fork server (``python -m
smc.analysis.console_worker``, started once by the server, with DuckDB and pyarrow imported and no connection)
forks one worker per statement; the worker opens the served file read-only with its own limits and is killed
when the time is up. Fences, in the order a runaway meets them:

- DuckDB's own ``memory_limit``, ``threads``, ``max_temp_directory_size`` and a private temp directory;
- an address-space limit (``RLIMIT_AS``) for what DuckDB does not count (string heaps, list aggregates);
- the result is fetched in record batches up to the row cap and a byte budget, so a wide result never reaches the
  server whole;
- an alarm that ends the process if the server that started it is gone.

On its channel (a socket, as :class:`multiprocessing.connection.Connection`) the worker says, as JSON (never a
pickle: the worker runs untrusted SQL, and unpickling what it sends would hand it the server): ``{"kind": "pid"}``
at once, ``{"kind": "ready"}`` once connected, then ``{"kind": "result", …}`` followed by the result as an Arrow
IPC stream, or ``{"kind": "error", "error": "memory" | "disk" | "refused" | "error", "message": …}``.
"""
from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import sys
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection

import duckdb
import pyarrow as pa

from smc.store.db import READ_ONLY_CONFIG

MESSAGE_MAX_BYTES = 2**20  # a message of the channel (not the result): a job, a few numbers or an error line
BATCH_ROWS = 1024  # fetched at a time: fine enough to stop near the byte budget, few enough to cost nothing
# What the worker needs beyond DuckDB's memory limit: untracked allocations, the fetched batches and their copy
# on the way out. Address space, not resident memory: DuckDB reserves more than it touches.
ADDRESS_SPACE_FACTOR = 2


@dataclass(frozen=True)
class Job:
    db_path: str
    statement: str
    row_cap: int
    result_max_bytes: int
    memory_limit_mb: int
    threads: int
    temp_limit_mb: int
    temp_dir: str
    alarm_s: float  # the worker ends itself after this long, whatever happens to the server


@dataclass(frozen=True)
class Fetched:
    rows: int
    bytes: int
    truncated_by: str | None  # "rows", "bytes" or None
    peak_mb: float  # the worker's resident peak (VmHWM)


def send(channel: Connection, kind: str, **fields) -> None:
    channel.send_bytes(json.dumps({"kind": kind, **fields}).encode())


def receive(channel: Connection) -> dict:
    """The next message; ValueError if it is not one (a dict with a kind)."""
    message = json.loads(channel.recv_bytes(MESSAGE_MAX_BYTES))
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ValueError("not a console worker message")
    return message


def serve(control_fd: int) -> None:
    """The fork server: for each channel the server passes on the control socket, a worker forked to run the
    statement the server sends on it. Ends when the server closes the control socket (or exits)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel; the server never waits
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the server; this ends with it
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 16, 1)
        except (OSError, InterruptedError):
            return
        if not data:
            return  # the server is gone
        for channel_fd in fds:
            try:
                pid = os.fork()
            except OSError:
                os.close(channel_fd)  # the server sees the channel close: no worker
                continue
            if pid == 0:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    work(Connection(channel_fd))
                finally:
                    os._exit(0)
            os.close(channel_fd)


def work(channel: Connection) -> None:
    """A forked worker: its pid (so the server can kill it), then the job it is sent, run."""
    try:
        send(channel, "pid", pid=os.getpid())
        job = Job(**json.loads(channel.recv_bytes(MESSAGE_MAX_BYTES)))
    except (OSError, EOFError, ValueError, TypeError):  # the server is gone or sent nothing usable
        return
    run(channel, job)


def run(channel: Connection, job: Job) -> None:
    """Run ``job`` and answer on ``channel``: never raises, always answers unless killed."""
    signal.alarm(max(1, math.ceil(job.alarm_s)))  # default action: the process ends
    try:
        os.chdir(job.temp_dir)  # a relative path names nothing but this empty directory
        con = connect(job)
        # pyarrow's allocator (mimalloc in these wheels) reserves ~1 GB of address space, untouched, at its first
        # allocation: let it do so before the limit is measured, or the first result batch would exhaust the limit
        pa.allocate_buffer(1)
        _limit_address_space(job.memory_limit_mb * ADDRESS_SPACE_FACTOR + 2 * job.result_max_bytes // 2**20)
        send(channel, "ready")
        fetched, payload = fetch(con, job)
        send(channel, "result", **asdict(fetched))
        channel.send_bytes(payload)
    except duckdb.OutOfMemoryException as exc:  # DuckDB's memory limit, or its temp space ("failed to offload")
        _answer(channel, "disk" if "failed to offload" in str(exc) else "memory", exc)
    except MemoryError as exc:  # Python or pyarrow hit the address-space limit
        _answer(channel, "memory", exc)
    except duckdb.PermissionException as exc:
        _answer(channel, "refused", exc)
    except (duckdb.Error, pa.ArrowException, ValueError, TypeError, OSError) as exc:
        kind = "memory" if "out of memory" in str(exc).lower() else "error"  # e.g. DuckDB's ArrowBuffer
        _answer(channel, kind, exc)
    except Exception as exc:  # noqa: BLE001 - the server shows every failure as a message, never a traceback
        _answer(channel, "error", exc)
    finally:
        channel.close()


def connect(job: Job) -> duckdb.DuckDBPyConnection:
    """The served file, read-only, with the console's limits; then external access off and configuration locked
    as :data:`READ_ONLY_CONFIG` says. (Set after connecting: with external access already off at connect, DuckDB
    refuses the private temp directory.)"""
    con = duckdb.connect(job.db_path, read_only=True, config={
        "memory_limit": f"{job.memory_limit_mb}MiB", "threads": job.threads,
        "max_temp_directory_size": f"{job.temp_limit_mb}MiB", "temp_directory": job.temp_dir,
        "python_enable_replacements": False})  # no Python variable of this module can be named as a table
    con.execute("SET enable_progress_bar = false")  # it would print to the server's log
    for name, value in READ_ONLY_CONFIG.items():
        if name != "lock_configuration":
            con.execute(f"SET {name} = {_literal(value)}")
    if READ_ONLY_CONFIG.get("lock_configuration"):
        con.execute("SET lock_configuration = true")  # last: nothing can be set after it
    return con


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def fetch(con: duckdb.DuckDBPyConnection, job: Job) -> tuple[Fetched, pa.Buffer]:
    """Up to ``row_cap`` rows and ``result_max_bytes`` bytes of the statement's result, as an Arrow IPC stream."""
    reader = con.sql(job.statement).limit(job.row_cap + 1).to_arrow_reader(BATCH_ROWS)
    batches, rows, size, truncated_by = [], 0, 0, None
    for batch in reader:
        if rows + batch.num_rows > job.row_cap:
            batch, truncated_by = batch.slice(0, job.row_cap - rows), "rows"
        if size + batch.nbytes > job.result_max_bytes:
            batch, truncated_by = _first_rows_within(batch, job.result_max_bytes - size), "bytes"
        batches.append(batch)
        rows, size = rows + batch.num_rows, size + batch.nbytes
        if truncated_by:
            break
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, reader.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return Fetched(rows, size, truncated_by, peak_mb()), sink.getvalue()


def _first_rows_within(batch: pa.RecordBatch, budget: int) -> pa.RecordBatch:
    """The longest head of ``batch`` of at most ``budget`` bytes (rows differ in size: binary search)."""
    low, high = 0, batch.num_rows  # the head of `low` rows fits; of `high + 1` rows it does not
    while low < high:
        middle = (low + high + 1) // 2
        if batch.slice(0, middle).nbytes <= budget:
            low = middle
        else:
            high = middle - 1
    return batch.slice(0, low)


def _limit_address_space(extra_mb: int) -> None:
    """At most ``extra_mb`` more address space than now (after the imports and the connection): an allocation
    past it fails inside the worker, which reports it, instead of growing until the machine swaps."""
    limit = (_status_kb("VmSize") // 1024 + extra_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


def _answer(channel: Connection, kind: str, exc: BaseException) -> None:
    text = str(exc).strip()
    try:
        send(channel, "error", error=kind, message=text.splitlines()[0][:2000] if text else type(exc).__name__)
    except OSError:  # the server stopped waiting (it killed us or is gone)
        pass


if __name__ == "__main__":
    serve(int(sys.argv[1]))
