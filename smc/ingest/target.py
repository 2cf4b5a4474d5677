"""One import at a time writes a target database, through private files beside it.

``Target(path)`` holds an exclusive lock (``flock`` on ``<target>.lock``) for the whole import: a second import
of the same file is refused at once rather than queued or interleaved. Its work files live in private folders
``.<target>.<random>.import`` in the target's folder (one filesystem, so the finished file is moved in with one
atomic rename; readers see the old file or the new one, never half of one). A killed import leaves its folder
and lock file behind; the next import into that folder removes those whose lock nobody holds.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from smc.ingest.problems import refused

LOCK_SUFFIX = ".lock"
WORK_SUFFIX = ".import"
_WORK = re.compile(r"\.(?P<target>.+)\.[^.]+" + re.escape(WORK_SUFFIX))
# What imports before the lock left when killed: .<target>.<pid>.tmp and its DuckDB WAL.
_LEGACY = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.tmp(\.wal)?")


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``flock(LOCK_EX)`` on ``path``, or None when another holds it. The holder
    deletes the file as it lets go, so a lock taken on a file that is no longer at ``path`` is retried."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


# Another import's sweep (below) takes each lock it finds for a moment, to tell a dead import's leftovers from a
# running one's: a target's own import that meets such a moment tries again for this long before it is refused.
SWEEP_MOMENT_S = 0.5


def _lock_unless_busy(path: Path) -> int | None:
    """:func:`_try_lock`, tried again for :data:`SWEEP_MOMENT_S` while it is busy (a sweep holds locks for
    microseconds; an import holds its own for the whole import, and is then refused)."""
    deadline = time.monotonic() + SWEEP_MOMENT_S
    while (fd := _try_lock(path)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return fd


def _unlock(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # while still held: whoever opens the path next makes a new lock file
    os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


class Target:
    """The database an import writes, locked for the import (a context manager)."""

    def __init__(self, path: str | Path, replace: bool = True):
        self.path = Path(path)
        self.replace = replace  # False: refuse when the file exists (the Import page unless asked to replace)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self._fd: int | None = None
        self._made: list[Path] = []  # folders this import made, deepest first

    def __enter__(self) -> Target:
        folder = self.path.parent
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise refused(f"cannot create the folder {folder}: {exc.strerror}") from None
        self._made = missing
        try:
            self._fd = _lock_unless_busy(self.lock_path)
        except OSError as exc:
            self._release()
            raise refused(f"cannot write in {folder}: {exc.strerror}") from None
        if self._fd is None:
            self._release()
            raise refused(f"another import is writing {self.path} now; nothing was read or written. "
                          "Try again when it has finished.")
        try:
            sweep(folder, self.path.name)
            self.check_replace()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            for leftover in self._own_work():
                _remove(leftover)
            _unlock(self.lock_path, self._fd)
            self._fd = None
        for folder in self._made:  # only while empty: a refused import leaves no folder it made
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def _own_work(self) -> list[Path]:
        prefix = f".{self.path.name}."
        return [p for p in self.path.parent.iterdir()
                if p.name.startswith(prefix) and (m := _WORK.fullmatch(p.name)) and m["target"] == self.path.name]

    def check_replace(self) -> None:
        if not self.replace and self.path.exists():
            raise refused(f"{self.path.name} already exists in {self.path.parent} and is kept; nothing was read or "
                          "written. Choose another name, or ask to replace it.")

    @contextlib.contextmanager
    def work_folder(self) -> Iterator[Path]:
        """A private folder beside the target, removed on every way out (and by the next import's sweep if the
        process is killed)."""
        assert self._fd is not None, "work folders are made under the target's lock"
        with tempfile.TemporaryDirectory(prefix=f".{self.path.name}.", suffix=WORK_SUFFIX,
                                         dir=self.path.parent, ignore_cleanup_errors=True) as folder:
            yield Path(folder)

    def install(self, built: Path) -> None:
        """Move a finished database file in place of the target in one rename, and make the rename durable."""
        self.check_replace()
        os.replace(built, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sweep(folder: Path, own: str) -> None:
    """Remove what dead imports left in ``folder``: work folders and lock files whose lock nobody holds (those of
    ``own``, whose lock the caller holds, are dead by definition), and the old ``.<target>.<pid>.tmp`` files of a
    process that no longer runs."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    work: dict[str, list[Path]] = {}
    locks = set()
    for entry in entries:
        name = entry.name
        if not name.startswith("."):
            if name.endswith(LOCK_SUFFIX) and name != own + LOCK_SUFFIX:
                locks.add(name.removesuffix(LOCK_SUFFIX))
            continue
        if found := _WORK.fullmatch(name):
            work.setdefault(found["target"], []).append(entry)
        elif (found := _LEGACY.fullmatch(name)) and not _pid_alive(int(found["pid"])):
            _remove(entry)
    for target in set(work) | locks:
        if target == own:
            for entry in work[target]:
                _remove(entry)
            continue
        if target not in work and not target.endswith(".duckdb"):
            continue  # a lone lock file is swept only when it names a database: it may be another program's
        lock_path = folder / (target + LOCK_SUFFIX)
        fd = _try_lock(lock_path)
        if fd is None:
            continue  # that import is running
        try:
            for entry in work.get(target, ()):
                _remove(entry)
        finally:
            _unlock(lock_path, fd)
