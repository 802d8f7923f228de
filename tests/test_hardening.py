"""Issue 5: awkward-but-valid images score ok, broken files get specific error rows, untrusted files run no code."""

from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from fathombatch.backends.manifest import manifest_path, read_manifest
from fathombatch.datasets import read_labels
from fathombatch.engine_export import ExportConfig, export_run
from fathombatch.errors import EngineError, LabelFileError, ManifestError
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.taxonomy import fathomnet2023

from .conftest import is_root

NAMES = list(fathomnet2023().names)


def picture(seed: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = rng.integers(0, 255, 3)
    arr[: size[1] // 2, : size[0] // 2] = rng.integers(0, 255, 3)
    return arr


def awkward_corpus(root: Path) -> dict[str, tuple[int, int]]:
    """Valid images that are awkward in every way the issue lists -> expected (width, height)."""
    root.mkdir(parents=True)
    rgb = picture(1)
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(rgb).convert("L").save(root / "gray.jpg")
    Image.fromarray((np.random.default_rng(2).random((120, 160)) * 65535).astype(np.uint16)).save(root / "gray16.png")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(np.dstack([rgb, np.full((120, 160), 90, np.uint8)])).save(root / "rgba.png")
    Image.fromarray(rgb).save(root / "really_a_png.jpg", format="PNG")
    Image.fromarray(rgb).save(root / "really_a_jpeg.png", format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(root / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(rgb[:1, :1]).save(root / "one_pixel.png")
    Image.fromarray(np.tile(rgb[:1], (200, 125, 1))).save(root / "wide.jpg")  # 20000 x 200
    Image.fromarray(rgb).save(root / "UPPER CASE.JPEG")
    Image.fromarray(rgb).save(root / "ünïcödé name.jpg")
    (root / "a").mkdir()
    (root / "b").mkdir()
    Image.fromarray(picture(3)).save(root / "a" / "same.jpg")
    Image.fromarray(picture(4)).save(root / "b" / "same.jpg")
    raw = os.path.join(os.fsencode(root), b"latin1_\xe9.jpg")  # a name that is not UTF-8
    Image.fromarray(rgb).save(raw, format="JPEG")
    sizes = {p: (160, 120) for p in ["cmyk.jpg", "gray.jpg", "gray16.png", "palette.png", "rgba.png",
                                      "really_a_png.jpg", "really_a_jpeg.png", "UPPER CASE.JPEG", "ünïcödé name.jpg",
                                      "a/same.jpg", "b/same.jpg", "latin1_\\xe9.jpg"]}
    sizes.update({"rotated.jpg": (120, 160), "one_pixel.png": (1, 1), "wide.jpg": (20000, 200)})
    return sizes


def broken_corpus(root: Path, good: Path) -> dict[str, str]:
    """Broken files -> the start of their expected error message."""
    root.mkdir(parents=True)
    jpeg, png = good.read_bytes(), io.BytesIO()
    Image.fromarray(picture(5)).save(png, format="PNG")
    (root / "zero.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (root / "random.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "notes.png").write_text("ROV dive 42, camera log\n")
    (root / "error_page.jpg").write_text("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>")
    (root / "header_only.jpg").write_bytes(jpeg[:2] + b"\xff\xe0")
    bomb = bytearray(png.getvalue())
    bomb[16:24] = (30000).to_bytes(4, "big") * 2
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
    (root / "bomb.png").write_bytes(bytes(bomb))
    os.symlink(root / "gone.jpg", root / "dangling.jpg")
    os.symlink(root / "loop_b.jpg", root / "loop_a.jpg")
    os.symlink(root / "loop_a.jpg", root / "loop_b.jpg")
    (root / "dirloop").mkdir()
    os.symlink("..", root / "dirloop" / "up")  # a directory loop: walked once
    expected = {
        "zero.jpg": "empty file (0 bytes)",
        "truncated.jpg": "corrupt or truncated JPEG data",
        "truncated.png": "corrupt or truncated PNG data",
        "random.jpg": "not a recognised image format",
        "notes.png": "a text file, not an image",
        "error_page.jpg": "an HTML file, not an image",
        "header_only.jpg": "a JPEG file whose header is corrupt or cut off",
        "bomb.png": "declared image size (900000000 pixels) is over the 178956970 pixel limit",
        "dangling.jpg": "broken symbolic link",
        "loop_a.jpg": "symbolic link loop",
        "loop_b.jpg": "symbolic link loop",
    }
    if not is_root():
        (root / "locked.jpg").write_bytes(jpeg)
        os.chmod(root / "locked.jpg", 0)
        expected["locked.jpg"] = "permission denied"
    return expected


@pytest.mark.parametrize("decoder", ["dali", "pil"])
def test_awkward_and_broken_files_each_get_the_right_row(
    decoder: str, dive: Path, engines: dict, tmp_path: Path
) -> None:
    root = tmp_path / "dump"
    sizes = awkward_corpus(root / "awkward")
    good = sorted((dive / "images").glob("*.jpg"))[:6]
    (root / "good").mkdir()
    for p in good:
        shutil.copy(p, root / "good" / p.name)
    expected_errors = broken_corpus(root / "broken", good[0])

    summary = score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=tmp_path / "s.parquet", decoder=decoder,
                                       batch_size=8))
    table = pl.read_parquet(tmp_path / "s.parquet")
    rows = {r["path"]: r for r in table.iter_rows(named=True)}
    assert table.height == len(sizes) + len(good) + len(expected_errors)  # the directory loop added nothing
    for rel, size in sizes.items():
        row = rows[f"awkward/{rel}"]
        assert row["status"] == "ok", (rel, row["error"])
        assert (row["width"], row["height"]) == size, rel
    for rel, message in expected_errors.items():
        row = rows[f"broken/{rel}"]
        assert row["status"] == "error" and row["error"].startswith(message), (rel, row["error"])
    assert summary.errors == len(expected_errors)
    assert summary.id_collisions == 2  # a/same.jpg with b/same.jpg, truncated.jpg with truncated.png
    shared = next(w for w in summary.warnings if "image_id(s) are shared" in w)
    assert shared.startswith("2 image_id(s) are shared by two or more files (e.g. 'same': awkward/a/same.jpg, "
                             "awkward/b/same.jpg)") and "Kaggle rejects" in shared
    assert rows["awkward/a/same.jpg"]["image_id"] == rows["awkward/b/same.jpg"]["image_id"] == "same"

    # The good images score exactly as in a run without any of the bad company.
    clean = score_folder(ScoreConfig(root=root / "good", engine=engines["onnx"], out=tmp_path / "c.parquet",
                                     decoder=decoder, batch_size=8))
    assert clean.errors == 0
    mixed = table.filter(pl.col("path").str.starts_with("good/")).sort("path").select(NAMES).to_numpy()
    alone = pl.read_parquet(tmp_path / "c.parquet").sort("path").select(NAMES).to_numpy()
    np.testing.assert_allclose(mixed, alone, atol=1e-6)


def test_same_run_twice_gives_identical_tables(dive: Path, engines: dict, tmp_path: Path) -> None:
    root = tmp_path / "dump"
    awkward_corpus(root)
    for name in ("a.parquet", "b.parquet"):
        score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=tmp_path / name))
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    assert a.equals(b)


def test_malicious_checkpoint_is_refused_by_export(run_dir: Path, tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    torch.save({"format": "fathombatch-checkpoint", "model": Payload()}, run / "checkpoints" / "best.pt")
    with pytest.raises(EngineError, match="could run code"):
        export_run(ExportConfig(run=run, format="onnx", out=tmp_path / "x.onnx"))
    assert not (tmp_path / "pwned").exists()


def test_deeply_nested_and_huge_json_fail_cleanly(tmp_path: Path, engines: dict,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(LabelFileError, match="nested too deeply"):
        read_labels(nested)
    dest = tmp_path / "m.onnx"
    shutil.copy(engines["onnx"], dest)
    manifest_path(dest).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="not valid json"):
        read_manifest(dest)
    import fathombatch.datasets as datasets

    monkeypatch.setattr(datasets, "MAX_LABEL_FILE_BYTES", 1000)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(200)], "annotations": []}))
    with pytest.raises(LabelFileError, match="larger than the 1000 byte limit"):
        read_labels(big)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"images": "x", "annotations": []}, "missing or non-list 'images'"),
        ({"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []}, "is not a number or string"),
        ({"images": [{"id": 1, "file_name": 7}], "annotations": []}, "not a usable file name"),
        ({"images": [{"id": 1, "file_name": "C:\\\\windows\\\\x.jpg"}], "annotations": []}, "outside the image folder"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "category_id": True}]},
         "is not a number"),
    ],
)
def test_coco_types_are_validated(tmp_path: Path, bad: dict, message: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(LabelFileError, match=message):
        read_labels(path)
