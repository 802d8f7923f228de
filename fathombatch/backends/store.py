"""The engine store (``./engines`` or ``$FATHOMBATCH_ENGINES``) and the messages that help a user find an engine.

An engine name that resolves to nothing is a typo, a wrong store or a training run that was never exported; the
messages here say which, on one line: where fathombatch looked, the store's engine files, the closest names
(:mod:`difflib`), and for a training run folder the exact ``fathombatch export`` command.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

#: The environment variable naming the engine store.
STORE_ENV = "FATHOMBATCH_ENGINES"
#: How many store entries an error message lists before "(+N more)".
LISTED = 5


def engine_store() -> Path:
    """The engine store: ``$FATHOMBATCH_ENGINES`` if set, else ``./engines``."""
    return Path(os.environ.get(STORE_ENV, "engines"))


def engine_names(folder: Path, suffixes: Iterable[str]) -> list[str]:
    """File names directly in ``folder`` that end in one of ``suffixes`` (any case), sorted; [] if unreadable."""
    wanted = {s.lower() for s in suffixes}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(e.name for e in entries if os.path.splitext(e.name)[1].lower() in wanted and e.is_file())


def close_names(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that look like ``name``, closest first.

    Names are compared by stem, letter case ignored (difflib ratio >= 0.6): the suffix says which runtime, not which
    model, and would make every short ``.onnx`` name look alike.
    """
    by_stem: dict[str, list[str]] = {}
    for c in candidates:
        by_stem.setdefault(Path(c).stem.lower(), []).append(c)
    close = difflib.get_close_matches(Path(name).stem.lower(), by_stem, n=n, cutoff=0.6)
    return [c for stem in close for c in by_stem[stem]][:n]


def suggestions(name: str | Path, suffixes: Iterable[str]) -> str:
    """``did you mean …? The store has: …`` for a name that resolves to no engine (just the store's contents when
    no name is close).

    Candidates are the store's engine files (named bare, as they resolve) and the engine files of the folder the
    name points into, when that is another folder.
    """
    suffixes = tuple(suffixes)
    path, store = Path(name), engine_store()
    stored = engine_names(store, suffixes)
    candidates = dict.fromkeys(stored)
    if path.parent != Path(".") and path.parent.resolve() != store.resolve():
        candidates.update(dict.fromkeys(str(path.parent / n) for n in engine_names(path.parent, suffixes)))
    by_name = {Path(c).name: c for c in reversed(candidates)}  # bare store names win over folder paths
    close = [by_name[c] for c in close_names(path.name, by_name)]
    if not store.is_dir():
        contents = f"the store {store} does not exist"
    elif not stored:
        contents = f"the store {store} has no engine files"
    else:
        more = f" (+{len(stored) - LISTED} more)" if len(stored) > LISTED else ""
        contents = f"the store has: {', '.join(stored[:LISTED])}{more}"
    if not close:
        return contents
    return f"did you mean {' or '.join(repr(c) for c in close)}? {contents[0].upper()}{contents[1:]}"


def where_looked(name: str | Path) -> str:
    """``looked in the current folder and in the engine store S/ (…)``: the two places a name is tried."""
    path, store = Path(name), engine_store()
    how = f"from {STORE_ENV}" if STORE_ENV in os.environ else f"set {STORE_ENV} to change it"
    first = "in the current folder and" if path.parent == Path(".") else f"at {path}, then for {path.name}"
    return f"looked {first} in the engine store {store.as_posix().rstrip('/')}/ ({how})"


def is_training_run(folder: Path) -> bool:
    """A fathombatch training run folder: it has the run's ``config.json`` or a ``checkpoints`` folder."""
    return (folder / "config.json").is_file() or (folder / "checkpoints").is_dir()


def export_hint(run: Path) -> str:
    """What to do with a training run given as an engine: the exact export command into the store."""
    stem = run.resolve().name
    out = engine_store() / f"{stem}.onnx"
    checkpoints = run / "checkpoints"
    if (checkpoints / "best.pt").is_file():
        which = ""
    elif (checkpoints / "last.pt").is_file():
        which = " --checkpoint last"
    else:
        return "this is a training run with no checkpoint yet; export it once it has finished an epoch"
    command = f"fathombatch export {shlex.quote(str(run))} --format onnx{which} --out {shlex.quote(str(out))}"
    return f"this is a training run; export it first: {command} (then use the engine {out.name})"
