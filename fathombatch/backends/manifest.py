"""Engine manifests: the json file beside every engine (``NAME.onnx`` -> ``NAME.onnx.json``).

A manifest says how to feed the engine (input spec), what its outputs mean (classes in column order), how it was
made (architecture, precision, runtime versions, training provenance, held-out metrics, training class counts) and
which exact engine file it describes (SHA-256). Decoding, scoring and evaluation all read it, so a model and its
normalisation or class list can never drift apart. The schema is documented in docs/engines.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fathombatch.errors import FathombatchError, ManifestError
from fathombatch.fsutil import file_sha256, write_json_atomic
from fathombatch.preprocess import InputSpec
from fathombatch.taxonomy import Taxonomy

FORMAT_VERSION = 1
#: Manifests larger than this are refused before parsing.
MAX_MANIFEST_BYTES = 64 * 1024**2
RUNTIMES = ("onnxruntime", "openvino", "torch", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Manifest:
    """Everything needed to run an engine and interpret its output.

    Attributes:
        name: engine name (file stem).
        arch: registered architecture it was built from.
        runtime: ``onnxruntime`` | ``openvino`` | ``torch`` | ``tensorrt``.
        precision: ``fp32`` | ``fp16`` | ``bf16`` | ``int8``.
        input: preprocessing spec.
        taxonomy: classes in output column order.
        outputs: output names in order; ``logits`` first, optionally ``features``.
        feature_dim: width D of the ``features`` output, if any.
        osd: out-of-sample method and its parameters (``{"method": "max-prob"}`` by default).
        class_counts: training images per class (for the frequency-prior floor), or None.
        metrics: held-out metrics at export (``val_map20``, ``val_prior_floor``...).
        provenance: how the engine was made (run folder, config, checkpoint, epoch, dates).
        versions: library versions at export.
        engine_sha256: SHA-256 of the engine file this manifest describes (see :func:`engine_sha256`).
        thresholds: per-class presence thresholds chosen on held-out data (see fathombatch.exports.thresholds),
            in column order, or None.
    """

    name: str
    arch: str
    runtime: str
    precision: str
    input: InputSpec
    taxonomy: Taxonomy
    outputs: tuple[str, ...] = ("logits",)
    feature_dim: int | None = None
    osd: Mapping[str, Any] = field(default_factory=lambda: {"method": "max-prob"})
    class_counts: tuple[int, ...] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, Any] = field(default_factory=dict)
    engine_sha256: str | None = None
    thresholds: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.taxonomy)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "arch": self.arch,
            "runtime": self.runtime,
            "precision": self.precision,
            "input": self.input.to_json(),
            "outputs": list(self.outputs),
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "taxonomy": self.taxonomy.name,
            "classes": self.taxonomy.to_records(),
            "osd": dict(self.osd),
            "class_counts": list(self.class_counts) if self.class_counts is not None else None,
            "metrics": dict(self.metrics),
            "provenance": dict(self.provenance),
            "versions": dict(self.versions),
            "engine_sha256": self.engine_sha256,
            "thresholds": list(self.thresholds) if self.thresholds is not None else None,
        }

    def summary_json(self) -> dict[str, Any]:
        """:meth:`to_json` without the bulky osd statistics (replaced by their SHA-256): for table metadata."""
        data = self.to_json()
        stats = data["osd"].get("stats")
        if stats is not None:
            digest = hashlib.sha256(json.dumps(stats, sort_keys=True).encode()).hexdigest()
            data["osd"] = {**data["osd"], "stats": {"sha256": digest, "n_train": stats.get("n_train")}}
        return data

    def fingerprint(self) -> str:
        """SHA-256 of the canonical json: changes when the engine file or anything about it changes."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_json(cls, data: Any, source: str = "manifest") -> Manifest:
        """Validate and build; raises ManifestError naming ``source`` and the bad field."""
        taxonomy, spec = _check_header(data, source)
        if "num_classes" in data and data["num_classes"] != len(taxonomy):
            raise ManifestError(
                f"{source}: num_classes is {data['num_classes']} but 'classes' lists {len(taxonomy)} categories"
            )
        counts = data.get("class_counts")
        if counts is not None and (
            not isinstance(counts, list)
            or len(counts) != len(taxonomy)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        ):
            raise ManifestError(f"{source}: class_counts must list {len(taxonomy)} non-negative integers")
        thresholds = data.get("thresholds")
        if thresholds is not None and (
            not isinstance(thresholds, list)
            or len(thresholds) != len(taxonomy)
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 < t <= 1.0 for t in thresholds)
        ):
            raise ManifestError(f"{source}: thresholds must list {len(taxonomy)} numbers in (0, 1]")
        feature_dim = data.get("feature_dim")
        if feature_dim is not None and (not isinstance(feature_dim, int) or isinstance(feature_dim, bool)
                                        or feature_dim < 1):
            raise ManifestError(f"{source}: feature_dim must be a positive whole number or null, got {feature_dim!r}")
        digest = data.get("engine_sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise ManifestError(f"{source}: engine_sha256 must be the engine's SHA-256 (64 hex digits), got "
                                f"{digest!r}; a manifest without it cannot prove which engine it describes: re-export "
                                "the engine")
        osd = data.get("osd") or {"method": "max-prob"}
        if not isinstance(osd, dict) or not isinstance(osd.get("stats", {}), dict):
            raise ManifestError(f"{source}: 'osd' must be an object and 'osd.stats', if present, an object")
        outputs = data.get("outputs", ["logits"])
        if not isinstance(outputs, list) or not outputs or outputs[0] != "logits":
            raise ManifestError(f"{source}: outputs must be a list starting with 'logits', got {outputs!r}")
        for key in ("osd", "metrics", "provenance", "versions"):
            if not isinstance(data.get(key, {}), dict):
                raise ManifestError(f"{source}: {key!r} must be an object")
        return cls(
            name=str(data["name"]),
            arch=str(data["arch"]),
            runtime=data["runtime"],
            precision=data["precision"],
            input=spec,
            taxonomy=taxonomy,
            outputs=tuple(str(o) for o in outputs),
            feature_dim=feature_dim,
            osd=osd,
            class_counts=tuple(counts) if counts is not None else None,
            metrics=data.get("metrics", {}),
            provenance=data.get("provenance", {}),
            versions=data.get("versions", {}),
            engine_sha256=digest,
            thresholds=tuple(float(t) for t in thresholds) if thresholds is not None else None,
        )


def _check_header(data: Any, source: str) -> tuple[Taxonomy, InputSpec]:
    """The manifest's required fields checked; its taxonomy and input spec. Raises ManifestError."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a json object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestError(f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    for key in ("name", "arch", "runtime", "precision", "input", "classes"):
        if key not in data:
            raise ManifestError(f"{source}: missing field {key!r}")
    if data["runtime"] not in RUNTIMES:
        raise ManifestError(f"{source}: runtime {data['runtime']!r} is not one of {', '.join(RUNTIMES)}")
    if data["precision"] not in PRECISIONS:
        raise ManifestError(f"{source}: precision {data['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if not isinstance(data["input"], dict):
        raise ManifestError(f"{source}: 'input' must be an object")
    try:
        return (Taxonomy.from_records(data["classes"], name=str(data.get("taxonomy", "custom"))),
                InputSpec.from_json(data["input"]))
    except FathombatchError as exc:
        raise ManifestError(f"{source}: {exc}") from None


def manifest_path(engine_path: str | Path) -> Path:
    """``engines/x.onnx`` -> ``engines/x.onnx.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_manifest(engine_path: str | Path) -> Manifest:
    """Read and validate the manifest of an engine file."""
    path = manifest_path(engine_path)
    if not path.is_file():
        raise ManifestError(
            f"engine {engine_path} has no manifest ({path} is missing); export engines with `fathombatch export`, "
            "which writes both"
        )
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; not a manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"{path}: not valid json ({exc})") from None
    return Manifest.from_json(data, source=str(path))


def write_manifest(engine_path: str | Path, manifest: Manifest) -> Path:
    """Write ``<engine>.json`` atomically; returns its path."""
    path = manifest_path(engine_path)
    write_json_atomic(path, manifest.to_json())
    return path


def engine_files(engine_path: str | Path) -> tuple[Path, ...]:
    """The files an engine consists of: the file itself, plus ``NAME.bin`` (the weights) for OpenVINO's ``NAME.xml``."""
    engine_path = Path(engine_path)
    if engine_path.suffix.lower() == ".xml":
        return engine_path, engine_path.with_suffix(".bin")
    return (engine_path,)


def engine_sha256(engine_path: str | Path) -> str:
    """The digest a manifest's ``engine_sha256`` holds: the file's SHA-256 for one-file engines; for OpenVINO, the
    SHA-256 of the .xml's and the .bin's hex digests joined by a colon, so that either file changing is caught.

    Raises:
        ManifestError: a file of the engine is missing (e.g. the .bin beside an .xml).
    """
    files = engine_files(engine_path)
    for f in files[1:]:
        if not f.is_file():
            raise ManifestError(f"engine {engine_path} has no weights file {f}; copy NAME.xml and NAME.bin together")
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256(":".join(file_sha256(f) for f in files).encode()).hexdigest()
