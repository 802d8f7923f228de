"""A scores table's metadata: the json ``score`` stores under the Parquet key ``fathombatch``, read into typed,
frozen dataclasses so its consumers (curation, exports, evaluation) stop walking untyped dicts.

The json's layout is documented in docs/output.md (``version``, ``created``, ``taxonomy``, ``engine_manifest``,
``run``, ``error_prior``). Every key is optional: tables written by older versions or by other tools may lack any of
them, and a missing value reads as None. A section that is present but not a json object is refused with one
:class:`~fathombatch.errors.UsageError` (before: a traceback at a different step in each consumer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.errors import UsageError
from fathombatch.taxonomy import Taxonomy

METADATA_KEY = "fathombatch"


@dataclass(frozen=True)
class EngineSummary:
    """What the table records about the engine that scored it (its manifest's summary); None where not recorded.

    Attributes:
        thresholds: per-class presence thresholds in column order (chosen on held-out data at export).
        class_counts: per-class training-set image counts in column order.
        training_run: the training run folder the manifest names (relative to the manifest's folder, or absolute).
        recorded: whether the table records an engine manifest at all.
        provenance: the manifest's ``provenance`` object as stored ({} when absent or not an object).
    """

    name: str | None = None
    arch: str | None = None
    runtime: str | None = None
    precision: str | None = None
    sha256: str | None = None
    thresholds: tuple[float, ...] | None = None
    class_counts: tuple[float, ...] | None = None
    training_run: str | None = None
    recorded: bool = False
    provenance: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)


@dataclass(frozen=True)
class RunInfo:
    """The scoring run's parameters that consumers use; None where not recorded.

    Attributes:
        root: the absolute folder that was scored (the table's ``path`` values are relative to it).
        engine: the engine file as given to ``score``.
        engine_fingerprint: SHA-256 of the engine's manifest json.
    """

    root: Path | None = None
    engine: str | None = None
    engine_fingerprint: str | None = None


@dataclass(frozen=True)
class ScoresMetadata:
    """A scores table's ``fathombatch`` metadata.

    Attributes:
        version: the fathombatch version that wrote the table.
        created: UTC time of the final merge, ISO 8601.
        taxonomy: the table's class list (None: not recorded; readers then assume FathomNet 2023).
        raw: the json object as stored, for keys not typed here (``error_prior``, the full run parameters).
    """

    version: str | None = None
    created: str | None = None
    taxonomy: Taxonomy | None = None
    engine: EngineSummary = field(default_factory=EngineSummary)
    run: RunInfo = field(default_factory=RunInfo)
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @classmethod
    def from_json(cls, meta: Mapping[str, Any], source: str | Path = "scores table") -> ScoresMetadata:
        """Type the json ``score`` wrote; ``source`` names the table in errors.

        Raises:
            UsageError: ``taxonomy``, ``engine_manifest`` or ``run`` is present but not a json object.
            TaxonomyError: the recorded taxonomy's classes are not a valid class list.
        """
        manifest = _section(meta, "engine_manifest", source)
        tax = _section(meta, "taxonomy", source)
        taxonomy = None
        if meta.get("taxonomy") is not None:
            classes: Any = tax.get("classes")  # from_records refuses anything but a list of class records
            taxonomy = Taxonomy.from_records(classes, name=str(tax.get("name", "custom")))
        provenance = manifest.get("provenance")
        provenance = provenance if isinstance(provenance, Mapping) else {}
        engine = EngineSummary(
            name=_text(manifest.get("name")), arch=_text(manifest.get("arch")), runtime=_text(manifest.get("runtime")),
            precision=_text(manifest.get("precision")), sha256=_text(manifest.get("engine_sha256")),
            thresholds=_numbers(manifest.get("thresholds")), class_counts=_numbers(manifest.get("class_counts")),
            training_run=_text(provenance.get("run")), recorded=bool(manifest), provenance=provenance,
        )
        return cls(version=_text(meta.get("version")), created=_text(meta.get("created")), taxonomy=taxonomy,
                   engine=engine, run=run_info(meta, source), raw=dict(meta))


def run_info(meta: Mapping[str, Any], source: str | Path = "scores table") -> RunInfo:
    """The typed ``run`` section alone (what :func:`~fathombatch.scores.table.recorded_root` needs, without
    validating the taxonomy).

    Raises:
        UsageError: ``run`` is present but not a json object.
    """
    run = _section(meta, "run", source)
    root = _text(run.get("root"))
    return RunInfo(root=Path(root) if root else None, engine=_text(run.get("engine")),
                   engine_fingerprint=_text(run.get("engine_fingerprint")))


def _section(meta: Mapping[str, Any], key: str, source: str | Path) -> Mapping[str, Any]:
    """``meta[key]`` as a mapping: {} when absent or null."""
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"{source}: its '{METADATA_KEY}' metadata field '{key}' is not a json object")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _numbers(value: Any) -> tuple[float, ...] | None:
    """A json list of numbers as a tuple; None for anything else (a consumer then falls back as if unrecorded)."""
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    return tuple(value)


def encode_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """The Parquet key-value metadata for a table: ``{"fathombatch": <json>}``."""
    return {METADATA_KEY: json.dumps(meta, sort_keys=True)}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``fathombatch`` metadata of a scores table as stored (empty dict when absent); see :class:`ScoresMetadata`
    for the typed view.

    It is Parquet file-level key-value metadata (``pyarrow.parquet.read_metadata(path).metadata`` shows it too).

    Raises:
        UsageError: the file is not readable Parquet, or the value is not json.
    """
    try:
        raw = pl.read_parquet_metadata(path)
    except Exception as exc:  # noqa: BLE001 - polars raises ComputeError/OSError for non-Parquet files
        raise UsageError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    value = raw.get(METADATA_KEY)
    if not value:
        return {}
    try:
        meta = json.loads(value)
    except json.JSONDecodeError:
        raise UsageError(f"{path}: its '{METADATA_KEY}' metadata is not valid json") from None
    return meta if isinstance(meta, dict) else {}
