"""File-system helpers: atomic writes, exclusive locks, and printable relative paths.

Every file fathombatch produces is written under a temporary name in the destination folder and renamed into
place with :func:`os.replace`, which is atomic on POSIX and Windows: a reader sees the old file or the new one,
never half of one, whatever happens to the process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fathombatch.errors import OutputError, param


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """Permissions of a newly created file under the process umask (mkstemp would give 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is fsynced and renamed onto ``dest``.

    On any exception the temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.fchmod(fd, _file_mode())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(dest: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(dest: str | Path, obj: Any) -> None:
    """Write indented json atomically."""
    write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that always encodes to UTF-8 and names exactly one file: bytes of the name that are not UTF-8
    become ``\\xNN`` and a literal backslash becomes ``\\\\``, so no two names share a spelling (a name holding
    the four characters ``\\xff`` and one holding the byte 0xFF used to); :func:`fs_path` undoes it.

    Python decodes undecodable bytes to lone surrogates (PEP 383), which Parquet, json and terminals cannot store.
    """
    text = os.fspath(path).replace("\\", "\\\\")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def fs_path(shown: str) -> str:
    """The file-system name (undecodable bytes as PEP 383 surrogates) of a :func:`display_path` spelling."""
    return _ESCAPE.sub(lambda m: "\\" if m.group(1) == "\\" else chr(0xDC00 + int(m.group(1)[1:], 16)), shown)


class FileLock:
    """An exclusive advisory lock on ``path`` (``fcntl.flock``), released when the process dies.

    Because the kernel drops flock locks with the process, a ``kill -9`` never leaves a stale lock behind. The
    lock file is removed on release; a process that locked a file just unlinked by its previous holder notices
    (the path no longer names its inode) and tries again, so two holders can never coexist.
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fh: Any = None

    def __enter__(self) -> FileLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            fh = open(self.path, "a+")  # noqa: SIM115 - held for the lifetime of the lock
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise OutputError(
                    f"{self.what} is being written by another fathombatch process (lock {self.path}); "
                    f"wait for it to finish or choose another {param('out')}"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fh = fh
                break
            fh.close()
        else:
            raise OutputError(f"could not take the lock {self.path}; is another process deleting it?")
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._fh is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def has_line_break(path: str) -> bool:
    """True when a path cannot be written one per line unambiguously (a file name may contain ``\\n`` or ``\\r``)."""
    return "\n" in path or "\r" in path


def write_path_list(dest: str | Path, paths: list[str]) -> list[str]:
    """Write ``paths`` one per line (for ``xargs``, shell loops) and the same list as a json array beside it
    (``dest`` with ``.json``), atomically. A path with a line break would read back as two paths, so it goes to the
    json list only; returns those left out of the text list."""
    dest = Path(dest)
    breaks = [has_line_break(p) for p in paths]
    write_text_atomic(dest, "".join(f"{p}\n" for p, broken in zip(paths, breaks, strict=True) if not broken))
    write_json_atomic(dest.with_suffix(".json"), paths)
    return [p for p, broken in zip(paths, breaks, strict=True) if broken]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
