"""No command replaces an existing output without --overwrite, and none replaces an input even with it.

The guarantee of docs/reliability.md ("Existing outputs"): every command that writes a file or into a folder refuses,
before any work, an output that exists (a folder: that is not empty) with one ``Error:`` line and exit 1, leaving it
byte for byte as it was; ``--overwrite`` replaces it (in a folder: only the files the command writes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from fathombatch.cli import cli
from tests.test_curate_common import invoke, make_scores

#: Commands that write but have no --overwrite, and why: each refuses an existing non-empty folder on its own
#: (train, synth) or resumes into it by design (download).
NO_OVERWRITE = {"train": "--resume continues a run", "synth": "refuses a non-empty folder",
                "download": "resumes into --out"}
OUTPUT_PARAMS = {"out", "report", "json_out", "copy_to", "failures"}


@dataclass(frozen=True)
class Inputs:
    dive: Path
    scores: Path
    engine: Path


@pytest.fixture(scope="module")
def inputs(dive: Path, engines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    scores = make_scores(dive / "images", tmp_path_factory.mktemp("ow") / "scores.parquet")
    return Inputs(dive=dive, scores=scores, engine=engines["onnx"])


@dataclass(frozen=True)
class Case:
    args: Callable[[Inputs, Path], list[object]]
    output: str  # the path (below the output folder) the error line names
    folder: bool = False


CASES = {
    "export-table long csv": Case(lambda i, o: ["export-table", i.scores, "--out", o / "present.csv"], "present.csv"),
    "export-table long parquet": Case(lambda i, o: ["export-table", i.scores, "--out", o / "p.parquet"], "p.parquet"),
    "export-table dwc csv": Case(lambda i, o: ["export-table", i.scores, "--format", "dwc", "--dataset-id", "x",
                                               "--out", o / "occ.csv"], "occ.csv"),
    "export-table dwc parquet": Case(lambda i, o: ["export-table", i.scores, "--format", "dwc", "--dataset-id", "x",
                                                   "--out", o / "occ.parquet"], "occ.parquet"),
    "export-table dives": Case(lambda i, o: ["export-table", i.scores, "--format", "dives", "--out", o / "dives"],
                               "dives", folder=True),
    "evaluate --report": Case(lambda i, o: ["evaluate", i.scores, "--truth", i.dive / "train.csv",
                                            "--report", o / "report"], "report", folder=True),
    "curate stats": Case(lambda i, o: ["curate", "stats", i.dive / "train.csv", "--out", o / "stats"], "stats",
                         folder=True),
    "curate split": Case(lambda i, o: ["curate", "split", i.dive / "annotations.json", "--out", o / "split"], "split",
                         folder=True),
    "curate select": Case(lambda i, o: ["curate", "select", i.scores, "--min-osd", "0", "--out", o / "sel.csv", "-q"],
                          "sel.csv"),
    "curate select --copy-to": Case(lambda i, o: ["curate", "select", i.scores, "--min-osd", "0", "--limit", "3",
                                                  "--out", o / "sel.txt", "--copy-to", o / "copies", "-q"], "sel.txt"),
    "curate review": Case(lambda i, o: ["curate", "review", i.scores, "--n", "4", "--out", o / "review", "-q"],
                          "review", folder=True),
    "curate dedupe": Case(lambda i, o: ["curate", "dedupe", i.dive / "images", "--out", o / "dupes", "-q"], "dupes",
                          folder=True),
    "curate convert": Case(lambda i, o: ["curate", "convert", i.dive / "annotations.json", "--out", o / "l.csv"],
                           "l.csv"),
    "curate validate": Case(lambda i, o: ["curate", "validate", i.dive / "annotations.json", "--out", o / "p.csv"],
                            "p.csv"),
    "curate subset": Case(lambda i, o: ["curate", "subset", i.dive / "train.csv", "--from-select", i.scores,
                                        "--out", o / "sub.json"], "sub.json"),
    "bench --json": Case(lambda i, o: ["bench", "decode", i.dive / "images", "--engine", i.engine, "--decoders", "pil",
                                       "--batch-sizes", "4", "--repeats", "1", "--max-images", "4",
                                       "--json", o / "bench.json"], "bench.json"),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (symlinks as their targets' names), by relative path."""
    return {p.relative_to(folder).as_posix(): os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("name", CASES)
def test_a_second_run_into_the_same_output_is_refused_until_overwrite(name: str, inputs: Inputs,
                                                                      tmp_path: Path) -> None:
    case, out = CASES[name], tmp_path / "out"
    args = case.args(inputs, out)
    code, _, err = invoke(cli, *args)
    assert code == 0, err
    first = snapshot(out)
    assert first

    code, _, err = invoke(cli, *args)
    target = out / case.output
    said = "already exists and is not empty" if case.folder else "already exists"
    assert code == 1
    assert err.splitlines() == [
        f"Error: {target} {said}; pass --overwrite to replace "
        + ("the files this command writes in it" if case.folder else "it")
        + ", or choose another "
        + ("--report" if name.startswith("evaluate") else "--json" if "bench" in name else "--out")
    ]
    assert snapshot(out) == first  # nothing touched, not even a temporary file left

    if case.folder:
        (target / "mine.txt").write_text("kept")
    code, _, err = invoke(cli, *args, "--overwrite")
    assert code == 0, err
    assert set(first) <= set(snapshot(out))
    if case.folder:
        assert (target / "mine.txt").read_text() == "kept"  # other files in an output folder are left alone


def test_every_part_of_a_darwin_core_export_is_guarded(inputs: Inputs, tmp_path: Path) -> None:
    """The eMoF table and the CSV sidecars are outputs too: any one of them existing refuses the export."""
    for existing in ("occ.emof.csv", "occ.csv.meta.json", "occ.emof.csv.meta.json"):
        (tmp_path / existing).write_text("mine")
        code, _, err = invoke(cli, "export-table", inputs.scores, "--format", "dwc", "--dataset-id", "x",
                              "--out", tmp_path / "occ.csv")
        assert code == 1 and err.splitlines()[-1].startswith(f"Error: {tmp_path / existing} already exists")
        assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
        (tmp_path / existing).unlink()


@dataclass(frozen=True)
class InputCase:
    args: Callable[[Path], list[object]]
    message: str  # the end of the error line, after the output's flag and path


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    return dest


INPUT_CASES = {
    "export-table SCORES": InputCase(lambda w: ["export-table", w / "scores.parquet", "--out", w / "scores.parquet"],
                                     "is the input SCORES"),
    "export-table through a symlink": InputCase(
        lambda w: ["export-table", w / "scores.parquet", "--out", w / "link" / "scores.parquet"],
        "is the input SCORES"),
    "export-table --metadata": InputCase(lambda w: ["export-table", w / "scores.parquet", "--metadata",
                                                    w / "meta.csv", "--out", w / "meta.csv"],
                                         "is the input --metadata"),
    "curate subset LABELS": InputCase(lambda w: ["curate", "subset", w / "train.csv", "--from-select",
                                                 w / "scores.parquet", "--out", w / "train.csv"],
                                      "is the input LABELS"),
    "curate select SCORES": InputCase(lambda w: ["curate", "select", w / "scores.parquet", "--out",
                                                 w / "scores.parquet"], "is the input SCORES"),
    "curate validate LABELS": InputCase(lambda w: ["curate", "validate", w / "annotations.json", "--out",
                                                   w / "annotations.json"], "is the input LABELS"),
    "curate split into the labels' folder": InputCase(lambda w: ["curate", "split", w / "train.csv", "--out", w],
                                                      "holds the input LABELS"),
    "curate dedupe into its source": InputCase(lambda w: ["curate", "dedupe", w / "images", "--out", w / "images"],
                                               "is the input SOURCE"),
    "evaluate --report holding SCORES": InputCase(lambda w: ["evaluate", w / "scores.parquet", "--truth",
                                                             w / "train.csv", "--report", w], "holds the input SCORES"),
    "bench --json onto the engine": InputCase(lambda w: ["bench", "decode", w / "images", "--engine", w / "e.onnx",
                                                         "--json", w / "e.onnx"], "is the input --engine"),
}


@pytest.mark.parametrize("name", INPUT_CASES)
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(name: str, inputs: Inputs, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _copy(inputs.scores, work / "scores.parquet")
    for label in ("train.csv", "annotations.json"):
        _copy(inputs.dive / label, work / label)
    _copy(next((inputs.dive / "images").glob("*.jpg")), work / "images" / "a.jpg")
    (work / "meta.csv").write_text("image_id,depth_m\nx,812.5\n")
    (work / "e.onnx").write_bytes(b"an engine")
    (work / "link").symlink_to(work)
    before = snapshot(work)
    args = INPUT_CASES[name].args(work)
    flag = next(str(a) for a in reversed(args) if str(a).startswith("--"))

    for overwrite in ((), ("--overwrite",)):
        code, _, err = invoke(cli, *args, *overwrite)
        assert code == 2, err
        line, = err.splitlines()
        assert line.startswith(f"Error: {flag} {args[-1]} {INPUT_CASES[name].message} (")
        assert line.endswith(f"outputs never replace inputs, even with --overwrite: choose another {flag}")
        assert snapshot(work) == before


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


def test_every_command_that_writes_has_overwrite_or_a_reason_not_to() -> None:
    writers = [name for name, command in _commands(cli) if OUTPUT_PARAMS & {p.name for p in command.params}]
    assert {"export-table", "evaluate", "bench", "curate stats", "curate subset"} <= set(writers)
    for name in writers:
        command = dict(_commands(cli))[name]
        has = any("--overwrite" in getattr(p, "opts", []) for p in command.params)
        assert has != (name in NO_OVERWRITE), name
        if has:
            help_text = command.get_help(click.Context(command, info_name=name))
            assert "--overwrite" in help_text, name


CAT = Path("d", "cat")  # a scored folder, one level down so that a folder can hold it but not the table

#: Outputs into a scored folder or another input folder: (arguments, the input the error line names, its verb).
#: ``w`` holds ``d/cat/Synallactes/{a,b}.jpg``, the table ``cat.parquet`` scored from ``d/cat`` (its run.root),
#: ``images/a.jpg``, ``annotations.json`` and ``train.csv``.
FOLDER_CASES: dict[str, tuple[Callable[[Path], list[object]], str, str]] = {
    "select --copy-to the scored folder (--symlink)": (
        lambda w: ["curate", "select", w / "cat.parquet", "--min-osd", "0", "--out", w / "c.csv", "--symlink",
                   "--copy-to", w / CAT], "image folder of SCORES", "is"),
    "select --copy-to the scored folder (copies)": (
        lambda w: ["curate", "select", w / "cat.parquet", "--min-osd", "0", "--out", w / "c.csv",
                   "--copy-to", w / CAT], "image folder of SCORES", "is"),
    "select --copy-to inside the scored folder": (
        lambda w: ["curate", "select", w / "cat.parquet", "--min-osd", "0", "--out", w / "c.csv",
                   "--copy-to", w / CAT / "dump"], "image folder of SCORES", "is inside"),
    "select --copy-to holding the scored folder": (
        lambda w: ["curate", "select", w / "cat.parquet", "--min-osd", "0", "--out", w / "c.csv",
                   "--copy-to", w / "d"], "image folder of SCORES", "holds"),
    "select --copy-to the given --images (its old spelling --images-root)": (
        lambda w: ["curate", "select", w / "cat.parquet", "--min-osd", "0", "--out", w / "c.csv", "--images-root",
                   w / CAT, "--symlink", "--copy-to", w / CAT], "--images", "is"),
    "select --out inside the scored folder": (
        lambda w: ["curate", "select", w / "cat.parquet", "--min-osd", "0", "--out", w / CAT / "c.csv"],
        "image folder of SCORES", "is inside"),
    "review --out the scored folder": (
        lambda w: ["curate", "review", w / "cat.parquet", "--n", "2", "--out", w / CAT], "image folder of SCORES",
        "is"),
    "review --out inside the scored folder": (
        lambda w: ["curate", "review", w / "cat.parquet", "--n", "2", "--out", w / CAT / "Synallactes"],
        "image folder of SCORES", "is inside"),
    "export-table dives into the scored folder": (
        lambda w: ["export-table", w / "cat.parquet", "--format", "dives", "--out", w / CAT],
        "image folder of SCORES", "is"),
    "export-table long inside the scored folder": (
        lambda w: ["export-table", w / "cat.parquet", "--out", w / CAT / "present.csv"], "image folder of SCORES",
        "is inside"),
    "evaluate --report inside the scored folder": (
        lambda w: ["evaluate", w / "cat.parquet", "--truth", w / "train.csv", "--report", w / CAT / "report"],
        "image folder of SCORES", "is inside"),
    "dedupe a table into its scored folder": (
        lambda w: ["curate", "dedupe", w / "cat.parquet", "--out", w / CAT / "dupes"], "image folder of SOURCE",
        "is inside"),
    "dedupe a folder into itself": (
        lambda w: ["curate", "dedupe", w / "images", "--out", w / "images" / "dupes"], "SOURCE", "is inside"),
    "validate --out inside --images": (
        lambda w: ["curate", "validate", w / "annotations.json", "--images", w / "images", "--out",
                   w / "images" / "x.csv"], "--images", "is inside"),
    "convert --out inside --images": (
        lambda w: ["curate", "convert", w / "train.csv", "--images", w / "images", "--out",
                   w / "images" / "l.json"], "--images", "is inside"),
    "bench --json inside ROOT": (
        lambda w: ["bench", "decode", w / "images", "--engine", w / "e.onnx", "--json", w / "images" / "b.json"],
        "ROOT", "is inside"),
}


@pytest.mark.parametrize("name", FOLDER_CASES)
def test_an_output_in_the_scored_folder_or_an_input_folder_is_refused_even_with_overwrite(
        name: str, inputs: Inputs, tmp_path: Path) -> None:
    """`curate select --copy-to cat --symlink --overwrite` once replaced the images of `cat` by links to themselves:
    the folder a table was scored from is an input of every command reading the table, given or recorded."""
    work = tmp_path / "work"
    images = sorted((inputs.dive / "images").glob("*.jpg"))[:2]
    for image, new in zip(images, ("a.jpg", "b.jpg"), strict=True):
        _copy(image, work / CAT / "Synallactes" / new)
    make_scores(work / CAT, work / "cat.parquet")
    _copy(images[0], work / "images" / "a.jpg")
    for label in ("train.csv", "annotations.json"):
        _copy(inputs.dive / label, work / label)
    (work / "e.onnx").write_bytes(b"an engine")
    before = snapshot(work)
    make_args, input_name, verb = FOLDER_CASES[name]
    args = make_args(work)
    flag = str(args[-2])
    cat = work / CAT
    named = {"image folder of SCORES": cat, "image folder of SOURCE": cat, "SOURCE": work / "images",
             "--images": cat if "--images-root" in map(str, args) else work / "images",
             "ROOT": work / "images"}[input_name]

    for overwrite in ((), ("--overwrite",)):
        code, _, err = invoke(cli, *args, *overwrite)
        assert code == 2, err
        line, = err.splitlines()
        assert line.startswith(f"Error: {flag} {args[-1]} {verb} the input {input_name} (")
        assert os.path.samefile(line.split(" (", 1)[1].split(")", 1)[0], named)
        assert line.endswith(f"even with --overwrite: choose another {flag}")
        assert snapshot(work) == before
    assert not any(p.is_symlink() for p in cat.rglob("*"))


@pytest.mark.parametrize("out", ["checkpoints/best.pt", "engine.onnx", "link/checkpoints/best.pt"])
def test_export_never_writes_into_its_run_folder(out: str, run_dir: Path, tmp_path: Path) -> None:
    """`export runx --format pt --out runx/checkpoints/best.pt --overwrite` once replaced the checkpoint it read."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (tmp_path / "link").symlink_to(run)
    before = snapshot(run)
    fmt = out.rsplit(".", 1)[1]
    where = (tmp_path if out.startswith("link") else run) / out
    for overwrite in ((), ("--overwrite",)):
        code, _, err = invoke(cli, "export", run, "--format", fmt, "--out", where, "-q", *overwrite)
        assert code == 2, err
        assert err.splitlines() == [(f"Error: the engine {where} is inside the run folder {run}, the export's input; "
                                     "an engine is never written into its run, even with overwrite: choose an out path "
                                     "outside it")]
        assert snapshot(run) == before


def test_build_engine_never_replaces_its_onnx_input(engines: dict[str, Path], tmp_path: Path) -> None:
    """A plan hard-linked (or symlinked) to its ONNX input is refused before TensorRT or a GPU is looked for."""
    onnx = tmp_path / "e.onnx"
    shutil.copy(engines["onnx"], onnx)
    shutil.copy(engines["onnx"].with_name(engines["onnx"].name + ".json"), tmp_path / "e.onnx.json")
    os.link(onnx, tmp_path / "hard.plan")
    (tmp_path / "soft.plan").symlink_to(onnx)
    before = snapshot(tmp_path)
    for plan in ("hard.plan", "soft.plan"):
        code, _, err = invoke(cli, "build-engine", onnx, "--out", tmp_path / plan, "--overwrite")
        assert code == 2, err
        assert err.splitlines() == [(f"Error: the plan {tmp_path / plan} is the same file as its input {onnx} (or "
                                     "their manifests are); outputs never replace inputs, even with overwrite: choose "
                                     "another out path")]
        assert snapshot(tmp_path) == before
