"""The Python API (issue 17, item 2): ``fb.score``, ``fb.open_engine(...).predict`` and ``fb.evaluate``.

The snippets of docs/python.md run as written in tests/test_docs_python.py; these are the focused tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from polars.testing import assert_frame_equal

import fathombatch as fb
import fathombatch.scoring.batch as batch_module
import fathombatch.scoring.folder as folder_module
from fathombatch.errors import DecodeError, OutputError, UsageError
from fathombatch.report import EvalConfig
from fathombatch.report import evaluate as evaluate_config
from fathombatch.scoring import ScoreConfig, score_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def pngs(dive: Path, tmp_path: Path) -> Path:
    """Six images of the tiny dive as PNGs (no JPEG DCT scaling: a file and its PIL image hold the same pixels):
    RGB, greyscale, RGBA and palette, plus a broken file."""
    root = tmp_path / "pngs"
    root.mkdir()
    files = sorted((dive / "images").glob("*.jpg"))[:6]
    modes = ["RGB", "RGB", "L", "RGBA", "P", "RGB"]
    for f, mode in zip(files, modes, strict=True):
        Image.open(f).convert(mode).save(root / f"{f.stem}-{mode}.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def no_flags(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "--" not in text, text
    return text


def test_in_memory_scoring_equals_the_table_the_command_line_writes(pngs: Path, engines: dict,
                                                                    tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.rglob("*"))
    df = fb.score(str(pngs), engine=str(engines["onnx"]), batch_size=4, progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no table, no part files, no lock
    out = tmp_path / "cli.parquet"
    score_folder(ScoreConfig(root=pngs, engine=engines["onnx"], out=out, batch_size=4))
    assert_frame_equal(df, pl.read_parquet(out))
    assert df.filter(pl.col("status") == "error")["path"].to_list() == ["broken.png"]


def test_in_memory_scoring_of_a_folder_with_a_video_equals_the_commands_table(pngs: Path, engines: dict,
                                                                             tmp_path: Path) -> None:
    """A dump with videos: fb.score finds them as `score` does and gives their frame rows in the table's order."""
    from tests.test_video import write_video

    write_video(pngs / "clip.mp4", [0, 500, 1000, 1500, 2000])
    df = fb.score(pngs, engine=engines["onnx"], batch_size=4, frame_interval=1.0, progress=False)
    out = tmp_path / "cli.parquet"
    score_folder(ScoreConfig(root=pngs, engine=engines["onnx"], out=out, batch_size=4, frame_interval=1.0))
    assert_frame_equal(df, pl.read_parquet(out))
    frames = df.filter(pl.col("path") == "clip.mp4")
    assert frames["frame_index"].to_list() == [0, 2, 4] and frames["timestamp_s"].to_list() == [0.0, 1.0, 2.0]


def test_out_writes_the_table_as_the_command_line_does_and_refuses_to_replace_it(pngs: Path, engines: dict,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    df = fb.score(pngs, engine=engines["onnx"], out=str(out), submission=str(tmp_path / "sub.csv"), progress=False)
    assert_frame_equal(df, pl.read_parquet(out))
    assert (tmp_path / "sub.csv").is_file() and not (tmp_path / "scores.parquet.parts").exists()
    with pytest.raises(OutputError) as exc:
        fb.score(pngs, engine=engines["onnx"], out=out, progress=False)
    assert "pass overwrite=True to replace it, or choose another out" in no_flags(exc)
    again = fb.score(pngs, engine=engines["onnx"], out=out, overwrite=True, progress=False)
    assert_frame_equal(again, df)


def test_out_resumes_an_interrupted_run(pngs: Path, engines: dict, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "scores.parquet"
    real, calls = batch_module.score_batch, {"n": 0}

    def interrupted(*args: object, **kwargs: object) -> pl.DataFrame:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_module, "score_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fb.score(pngs, engine=engines["onnx"], out=out, batch_size=2, progress=False)
    monkeypatch.setattr(batch_module, "score_batch", real)
    assert (tmp_path / "scores.parquet.parts").is_dir() and not out.exists()
    df = fb.score(pngs, engine=engines["onnx"], out=out, batch_size=2, progress=False)
    assert_frame_equal(df, fb.score(pngs, engine=engines["onnx"], batch_size=2, progress=False))


def test_a_list_of_files_keeps_its_order_and_paths(pngs: Path, engines: dict) -> None:
    files = sorted(pngs.glob("*.png"), reverse=True)[:3]
    df = fb.score([str(files[0]), files[1], str(files[2])], engine=engines["onnx"], batch_size=2, progress=False)
    assert df["path"].to_list() == [str(f) for f in files]
    assert df["image_id"].to_list() == [f.stem for f in files]
    whole = fb.score(pngs, engine=engines["onnx"], progress=False)
    names = fb.open_engine(engines["onnx"]).classes
    for f, row in zip(files, df.select(names).to_numpy(), strict=True):
        expected = whole.filter(pl.col("path") == f.name).select(names).to_numpy()[0]
        np.testing.assert_allclose(row, expected, atol=1e-6)
    one = fb.score(str(files[0]), engine=engines["onnx"], progress=False)  # one file alone
    assert one["path"].to_list() == [str(files[0])]


def test_an_opened_engine_is_reused_not_reopened(pngs: Path, engines: dict, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    eng = fb.open_engine(engines["onnx"])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine was opened again")

    monkeypatch.setattr("fathombatch.api.engine.open_backend", refuse)
    monkeypatch.setattr(folder_module, "open_engine", refuse)
    assert fb.score(pngs, engine=eng, progress=False).height == 7
    assert fb.score(pngs, engine=eng, out=tmp_path / "s.parquet", progress=False).height == 7
    assert fb.score(pngs, engine=eng.engine, progress=False).height == 7  # the runtime's Engine as well


def test_predict_equals_scoring_the_file(pngs: Path, engines: dict) -> None:
    eng = fb.open_engine(str(engines["onnx"]))
    df = fb.score(pngs, engine=eng, decoder="pil", progress=False).filter(pl.col("status") == "ok")
    files = [pngs / p for p in df["path"]]
    images: list[object] = [Image.open(f) for f in files]  # every mode: RGB, L, RGBA, P
    probs = eng.predict(images, batch_size=4)
    assert probs.shape == (6, len(eng.classes)) and probs.dtype == np.float32
    table = df.select(eng.classes).to_numpy()
    np.testing.assert_allclose(probs, table, atol=1e-6)
    rgb = [i for i, f in enumerate(files) if f.stem.endswith("-RGB")]
    grey = next(i for i, f in enumerate(files) if f.stem.endswith("-L"))
    arrays = [np.asarray(Image.open(files[i])) for i in rgb] + [np.asarray(Image.open(files[grey]))]
    assert arrays[-1].ndim == 2
    np.testing.assert_allclose(eng.predict(arrays), table[[*rgb, grey]], atol=1e-6)
    np.testing.assert_allclose(eng.predict([str(f) for f in files]), table, atol=1e-6)
    assert eng.predict([]).shape == (0, len(eng.classes))


def test_predict_on_a_jpeg_path_equals_its_row(dive: Path, engines: dict) -> None:
    """A path goes through the decoder itself, JPEG DCT scaling included."""
    eng = fb.open_engine(engines["onnx"])
    files = sorted((dive / "images").glob("*.jpg"))[:3]
    df = fb.score([str(f) for f in files], engine=eng, decoder="pil", progress=False)
    np.testing.assert_allclose(eng.predict(files), df.select(eng.classes).to_numpy(), atol=1e-6)


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((8, 8, 3), dtype=np.float32), r"images\[1\] is a float32 array; predict takes uint8 pixels 0\.\.255 "
                                            r"\(scale floats in 0\.\.1 with \(x \* 255\)"),
    (np.zeros((8, 8, 3), dtype=np.uint16), r"images\[1\] is a uint16 array"),
    (np.zeros((8, 8, 4), dtype=np.uint8), r"images\[1\] has shape \(8, 8, 4\); predict takes \(H, W, 3\) RGB or "
                                          r"\(H, W\) greyscale arrays \(drop an alpha channel first"),
    (np.zeros((2, 8, 8, 3), dtype=np.uint8), r"images\[1\] has shape \(2, 8, 8, 3\)"),
    (b"bytes", r"images\[1\] is a bytes; predict takes PIL images, uint8 numpy arrays"),
])
def test_predict_refuses_what_it_would_have_to_guess(engines: dict, image: object, message: str) -> None:
    eng = fb.open_engine(engines["onnx"])
    with pytest.raises(UsageError, match=message):
        eng.predict([np.zeros((8, 8, 3), dtype=np.uint8), image])


def test_predict_wants_a_list_and_names_a_bad_file(engines: dict, tmp_path: Path) -> None:
    eng = fb.open_engine(engines["onnx"])
    with pytest.raises(UsageError, match=r"for one image pass \[image\]"):
        eng.predict(np.zeros((8, 8, 3), dtype=np.uint8))  # type: ignore[arg-type]
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(DecodeError, match=r"images\[0\] \(.*x\.png\): a text file, not an image"):
        eng.predict([tmp_path / "x.png"])


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"batch_size": 0}, UsageError, r"^batch_size must be at least 1, got 0$"),
    ({"top_k": 0}, UsageError, r"^top_k must be between 1 and 290, got 0$"),
    ({"top_k": 0, "out": "OUT"}, UsageError, r"^top_k must be between 1 and 290, got 0$"),
    ({"decoder": "nope"}, UsageError, r"unknown decoder 'nope'"),
    ({"submission": "s.csv"}, UsageError, r"^submission is written with the table: give out= as well$"),
    ({"source": "LIST", "out": "OUT"}, UsageError, r"out= writes the scores table of a folder"),
    ({"source": []}, UsageError, r"^source is an empty list"),
    ({"source": ["missing.png"]}, UsageError, r"^1 of the 1 files in source do not exist, e\.g\. missing\.png$"),
    ({"source": "missing-folder"}, UsageError, r"^source missing-folder does not exist$"),
    ({"source": [3]}, UsageError, r"^source\[0\] is a int; give paths"),
    ({"engine": "nope.onnx"}, UsageError, r"engine 'nope\.onnx' not found"),
])
def test_bad_arguments_raise_library_errors_naming_parameters(pngs: Path, engines: dict, tmp_path: Path,
                                                              kwargs: dict, error: type, message: str) -> None:
    args = {"engine": engines["onnx"], "progress": False, **kwargs}
    source = args.pop("source", pngs)
    source = [str(next(pngs.glob("*.png")))] if source == "LIST" else source
    if args.get("out") == "OUT":
        args["out"] = tmp_path / "t.parquet"
    with pytest.raises(error, match=message) as exc:
        fb.score(source, **args)
    no_flags(exc)


def test_evaluate_a_frame_as_its_table(dive: Path, engines: dict, tmp_path: Path) -> None:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    df = fb.score(root, engine=engines["onnx"], progress=False)
    out = tmp_path / "scores.parquet"
    score_folder(ScoreConfig(root=str(root), engine=str(engines["onnx"]), out=str(out)))  # str paths (issue 17)
    truth = dive / "train.csv"
    m = fb.evaluate(df, truth=str(truth), osd_truth=dive / "osd.csv")
    table = evaluate_config(EvalConfig(scores=str(out), truth=str(truth), osd_truth=str(dive / "osd.csv")))
    assert (m.map_at_k, m.prior_floor, m.floor_source, m.sauc) == (table.map_at_k, table.prior_floor,
                                                                   table.floor_source, table.sauc)
    assert m.n_truth_in_training == table.n_truth_in_training == 18  # the manifest came along with the frame
    assert m.warnings == table.warnings
    assert fb.evaluate(out, truth=truth).map_at_k == m.map_at_k
    assert fb.evaluate(EvalConfig(scores=out, truth=truth)).map_at_k == m.map_at_k
    assert m.to_json()["map@20"] == m.map_at_k


def test_a_derived_frame_warns_and_engine_restores_the_checks(dive: Path, engines: dict,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    df = fb.score(dive / "images", engine=engines["onnx"], progress=False)
    derived = df.filter(pl.col("status") == "ok")
    with caplog.at_level("WARNING"):
        bare = fb.evaluate(derived, truth=dive / "train.csv")
    assert "carries no engine manifest" in caplog.text and bare.n_truth_in_training is None
    assert bare.floor_source == "frequencies of the truth labels themselves"
    restored = fb.evaluate(derived, truth=dive / "train.csv", engine=engines["onnx"])
    assert restored.n_truth_in_training == 18
    assert restored.floor_source == "engine training-set frequencies"


def test_evaluate_refuses_the_frames_own_predictions_as_truth(dive: Path, engines: dict, tmp_path: Path) -> None:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    df = fb.score(root, engine=engines["onnx"], out=tmp_path / "t.parquet", submission=tmp_path / "sub.csv",
                  progress=False)
    with pytest.raises(UsageError, match="is not truth: its category lists are the evaluated predictions' own") as exc:
        fb.evaluate(df, truth=tmp_path / "sub.csv")
    no_flags(exc)
    with pytest.raises(UsageError, match=r"^truth is required"):
        fb.evaluate(df)
    with pytest.raises(UsageError, match=r"not a fathombatch scores table .*missing columns \['osd'"):
        fb.evaluate(df.drop("osd"), truth=dive / "train.csv")


def test_fb_score_is_the_api_function_in_every_import_order(dive: Path, engines: dict) -> None:
    """Fresh interpreters, so earlier imports do not decide: importing the scoring core first must not change what
    ``fb.score`` is."""
    call = (f"df = fb.score({str(dive / 'images')!r}, engine={str(engines['onnx'])!r}, progress=False); "
            "print(type(df).__name__, df.height, fb.score.__module__)")
    for first in ("import fathombatch as fb", "import fathombatch.scoring; import fathombatch as fb",
                  "from fathombatch.scoring import ScoreConfig; import fathombatch as fb; fb.ScoreConfig"):
        proc = subprocess.run([sys.executable, "-c", f"{first}; {call}"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        assert proc.stdout.strip() == "DataFrame 24 fathombatch.api.scoring", (first, proc.stderr)


def test_fb_score_shows_the_api_signature() -> None:
    import inspect

    assert list(inspect.signature(fb.score).parameters)[:3] == ["source", "engine", "out"]


def test_the_api_names_load_lazily() -> None:
    code = ("import sys, fathombatch as fb\n"
            "assert {'score', 'open_engine', 'evaluate'} <= set(fb.__all__)\n"
            "print(sorted(m for m in ('torch', 'numpy', 'polars', 'onnxruntime', 'fathombatch.api') "
            "if m in sys.modules))\n"
            "fb.open_engine\n"
            "print('fathombatch.api' in sys.modules, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.split("\n")[:2] == ["[]", "True False"]
