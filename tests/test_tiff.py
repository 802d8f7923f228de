"""TIFF stills: discovered, decoded by Pillow in every decoder, 16-bit samples scaled by the full 0..65535 range."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from fathombatch.decode import create_decoder, discover
from fathombatch.decode.discover import IMAGE_SUFFIXES, strip_image_suffix
from fathombatch.preprocess import InputSpec

#: Identity normalisation, so decoded rows read back as 8-bit values (x 255).
RAW = InputSpec(height=12, width=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def write_rgb16_tiff(path: Path, rgb: np.ndarray) -> Path:
    """A baseline little-endian 48-bit RGB TIFF (Pillow can read these but not write them)."""
    height, width, _ = rgb.shape
    data = rgb.astype("<u2").tobytes()
    bits_at, data_at = 8 + 2 + 10 * 12 + 4, 8 + 2 + 10 * 12 + 4 + 6
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, data_at), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16)
                     + data)
    return path


def tiff_stills(folder: Path) -> dict[str, Path]:
    """One file of each kind the docs promise, 16x12 pixels, each one flat colour."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb8 = folder / "rgb8.tif"
    Image.new("RGB", (16, 12), (10, 200, 30)).save(rgb8, compression="tiff_lzw")
    grey16 = folder / "grey16.TIFF"
    Image.fromarray(np.full((12, 16), 40000, dtype=np.uint16)).save(grey16, format="TIFF")
    assert Image.open(grey16).mode == "I;16"
    rgb16 = write_rgb16_tiff(folder / "rgb16.tif",
                             np.broadcast_to(np.array([65535, 32968, 255], np.uint16), (12, 16, 3)))
    pages = folder / "pages.tiff"
    Image.new("RGB", (16, 12), (250, 0, 0)).save(pages, save_all=True,
                                                  append_images=[Image.new("RGB", (32, 24), (0, 0, 250))])
    return {"rgb8": rgb8, "grey16": grey16, "rgb16": rgb16, "pages": pages}


#: What each still decodes to: 16-bit values keep their 8 most significant bits (v >> 8, so 0..65535 -> 0..255).
EXPECTED = {"rgb8": (10, 200, 30), "grey16": (156, 156, 156), "rgb16": (255, 128, 0), "pages": (250, 0, 0)}


def test_tiff_is_an_image_suffix_everywhere(tmp_path: Path) -> None:
    stills = tiff_stills(tmp_path)
    Image.new("RGB", (16, 12)).save(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("x")
    assert discover(tmp_path) == ["a.jpg", "grey16.TIFF", "pages.tiff", "rgb16.tif", "rgb8.tif"]
    assert {".tif", ".tiff"} <= IMAGE_SUFFIXES and len(stills) == 4
    assert strip_image_suffix("abc.TIF") == "abc" and strip_image_suffix("abc.tiff") == "abc"


def test_pillow_decodes_every_kind_of_tiff_still(tmp_path: Path) -> None:
    stills = tiff_stills(tmp_path)
    with create_decoder("pil", RAW, threads=1) as pil:
        batch = pil.decode(list(stills.values()))
    assert batch.errors == [None] * 4 and batch.sizes == [(16, 12)] * 4  # the first page's size, not the second's
    got = np.rint(batch.images[:, :, 0, 0] * 255).astype(int)
    assert [tuple(row) for row in got] == list(EXPECTED.values())


def test_dali_hands_tiff_to_pillow_and_keeps_the_rest_of_the_batch(tmp_path: Path) -> None:
    pytest.importorskip("nvidia.dali", reason="needs DALI")
    stills = tiff_stills(tmp_path)
    jpegs = []
    for i in range(2):
        jpegs.append(tmp_path / f"j{i}.jpg")
        Image.new("RGB", (32, 24), (40 * i, 90, 160)).save(jpegs[-1])
    paths = [jpegs[0], *stills.values(), jpegs[1]]
    with create_decoder("dali", RAW, batch_size=8, threads=1) as dali, create_decoder("pil", RAW, threads=1) as pil:
        mixed, tiffs_alone = dali.decode(paths), pil.decode(list(stills.values()))
        jpegs_alone = dali.decode(jpegs)
    assert mixed.ok == list(range(6)) and mixed.decoders == ["dali", "pil", "pil", "pil", "pil", "dali"]
    # TIFF pixels are Pillow's, bit for bit (DALI would round 16-bit samples differently), in the batch's order.
    np.testing.assert_array_equal(mixed.images[1:5], tiffs_alone.images)
    np.testing.assert_array_equal(mixed.images[[0, 5]], jpegs_alone.images)


def test_tiff_stills_are_scored(tmp_path: Path, engines: dict) -> None:
    from fathombatch.scoring import ScoreConfig, score_folder

    tiff_stills(tmp_path / "dive")
    out = tmp_path / "scores.parquet"
    score_folder(ScoreConfig(root=tmp_path / "dive", engine=engines["onnx"], out=out))
    table = pl.read_parquet(out)
    assert table["path"].to_list() == ["grey16.TIFF", "pages.tiff", "rgb16.tif", "rgb8.tif"]
    assert table["status"].to_list() == ["ok"] * 4 and table["image_id"].to_list()[0] == "grey16"


def test_curate_subset_matches_ids_to_tiff_file_names(tmp_path: Path) -> None:
    from fathombatch.curate.subset import SubsetConfig, make_subset

    labels = tmp_path / "train.csv"
    labels.write_text('id,categories\nst_001.tif,"[1.0, 3.0]"\nst_002.TIFF,[7.0]\nst_003.jpg,[2.0]\n')
    ids = tmp_path / "ids.txt"
    ids.write_text("st_001\nst_002\n")
    result = make_subset(SubsetConfig(labels=labels, out=tmp_path / "sub.csv", ids=ids))
    assert result.not_found == () and pl.read_csv(tmp_path / "sub.csv")["id"].to_list() == ["st_001.tif",
                                                                                              "st_002.TIFF"]
