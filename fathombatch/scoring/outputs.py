"""A run's outputs: refusing outputs that would replace inputs (:func:`check_outputs`), and writing the final table
and submission from the part files (:func:`finish_table`)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch import __version__
from fathombatch.backends import Engine, engine_files, manifest_path, resolve_engine_path
from fathombatch.errors import UsageError, param
from fathombatch.pathguard import entry_names
from fathombatch.scores.metadata import encode_metadata
from fathombatch.scores.submission import error_prior, write_submission
from fathombatch.scoring.config import ScoreConfig
from fathombatch.scoring.parts import PartStore


def check_outputs(cfg: ScoreConfig, files: list[str]) -> None:
    """Refuse outputs that are folders or inputs: the table and the submission must be two different files, and
    neither may be the engine (or a file of it), its manifest, or an image of the dump; ``overwrite`` never
    allows that.

    Args:
        files: the dump's images, relative to ``cfg.root`` (from :func:`~fathombatch.decode.discover`).
    """
    outputs = [(cfg.out, param("out"))]
    outputs += [(cfg.submission, param("submission"))] if cfg.submission is not None else []
    for path, flag in outputs:
        if path.is_dir() or path.name in ("", ".", ".."):
            raise UsageError(f"{flag} {path} is a folder; name the file to write (a path inside it)")
    names = [(entry_names(path), path, flag) for path, flag in outputs]
    if len(names) == 2 and names[0][0] & names[1][0]:
        raise UsageError(f"{param('out')} and {param('submission')} name the same file ({cfg.out}); give the "
                         "submission CSV its own name")
    engine = resolve_engine_path(cfg.engine)
    protected = set().union(*(entry_names(f) for f in (*engine_files(engine), manifest_path(engine))))
    roots = entry_names(cfg.root) | {cfg.root.resolve()}
    inputs = set(files)
    for spellings, path, flag in names:
        inside = any(s.is_relative_to(r) and s.relative_to(r).as_posix() in inputs for s in spellings for r in roots)
        if inside or spellings & protected:
            what = "an image of the dump being scored" if inside else "the engine or its manifest"
            raise UsageError(f"{flag} {path} is {what}; outputs never replace inputs, choose another {flag}")


def finish_table(cfg: ScoreConfig, engine: Engine, store: PartStore, params: dict[str, Any], shown: list[str],
                 warnings: list[str]) -> tuple[pl.DataFrame, str]:
    """Merge the parts into ``cfg.out`` with the run's metadata, write the submission if asked, remove the parts.

    Args:
        params: the run parameters recorded with the parts (:meth:`ScorePlan.run_params`).
        shown: the display paths of every file of the run (the rows to keep).
        warnings: appended to: rows of the submission that carry the prior ranking.

    Returns:
        The final table's fixed columns (image_id, path, status, error, top_categories, osd) and the source of the
        error rows' prior ranking.
    """
    taxonomy = engine.manifest.taxonomy
    prior = error_prior(engine.manifest, cfg.top_k)
    meta = {
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "taxonomy": {"name": taxonomy.name, "classes": taxonomy.to_records()},
        "engine_manifest": engine.manifest.summary_json(),
        "run": {**params, "root": str(cfg.root.resolve()), "batch_size": cfg.batch_size, "files": len(shown)},
        "error_prior": prior.to_json(),
    }
    out: Path = cfg.out
    store.merge(out, set(shown), encode_metadata(meta))
    final = pl.read_parquet(out, columns=["image_id", "path", "status", "error", "top_categories", "osd"])
    if cfg.submission is not None and (n_prior := write_submission(final, cfg.submission, prior=prior)):
        warnings.append(f"{n_prior} file(s) could not be scored; their submission rows carry the prior ranking "
                        f"({prior.description}) and osd 1.0")
    store.remove()
    return final, prior.source
