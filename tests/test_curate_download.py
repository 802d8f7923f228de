"""fathombatch download against a local HTTP server on 127.0.0.1 that fails in the ways real servers do."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from fathombatch.cli import cli
from fathombatch.cli.curate import download as download_command
from fathombatch.curate.download import DownloadConfig, _ends_complete, download
from fathombatch.errors import LabelFileError
from tests.test_curate_common import invoke


class Server:
    """Serves ``files`` by name; ``flaky.jpg`` answers 500 twice first, ``cut.jpg`` closes half-way,
    ``missing.jpg`` is a 404, ``page.jpg`` is an HTML page with status 200. Counts requests per path."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.counts: Counter[str] = Counter()
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                with lock:
                    server.counts[name] += 1
                    n = server.counts[name]
                if name == "missing.jpg" or (name not in server.files and name != "page.jpg"):
                    self.send_error(404, "Not Found")
                    return
                if name == "flaky.jpg" and n <= 2:
                    self.send_error(500, "Internal Server Error")
                    return
                body = b"<html><body>Service page</body></html>" if name == "page.jpg" else server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in ("trickle.jpg", "silent.jpg"):
                    for i in range(len(body) if name == "trickle.jpg" else 1):  # a byte every 0.2 s, or one then none
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.2 if name == "trickle.jpg" else 60)
                    return
                if name == "cut.jpg":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True  # the rest never comes
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(dive: Path) -> Iterator[Server]:
    images = sorted((dive / "images").iterdir())
    files = {f"ok{i}.jpg": p.read_bytes() for i, p in enumerate(images[:5])}
    files["flaky.jpg"] = images[5].read_bytes()
    files["cut.jpg"] = images[6].read_bytes()
    files["trickle.jpg"] = files["silent.jpg"] = images[7].read_bytes()
    srv = Server(files)
    yield srv
    srv.close()


def annotations(server: Server, tmp_path: Path, names: list[str], **extra: dict) -> Path:
    images = [{"id": i, "file_name": f"sub/{n}" if n.startswith("ok") else n, "coco_url": f"{server.url}/{n}",
               **extra.get(n, {})} for i, n in enumerate(names, start=1)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return path


def config(ann: Path, out: Path) -> DownloadConfig:
    return DownloadConfig(annotations=ann, out=out, workers=4, retries=3, backoff=0.01, timeout=5.0)


def test_download_retries_reports_and_resumes(server: Server, tmp_path: Path) -> None:
    names = [*(f"ok{i}.jpg" for i in range(5)), "flaky.jpg", "cut.jpg", "missing.jpg"]
    ann = annotations(server, tmp_path, names)
    out = tmp_path / "images"
    first = download(config(ann, out))
    assert (first.total, first.downloaded, first.skipped) == (8, 6, 0)
    reasons = {f.file_name: f.reason for f in first.failures}
    assert set(reasons) == {"cut.jpg", "missing.jpg"}
    assert reasons["missing.jpg"] == "HTTP 404 Not Found"
    assert reasons["cut.jpg"].startswith("truncated") and "after 4 attempts" in reasons["cut.jpg"]
    assert server.counts["flaky.jpg"] == 3 and server.counts["missing.jpg"] == 1 and server.counts["cut.jpg"] == 4
    for i in range(5):
        assert (out / "sub" / f"ok{i}.jpg").read_bytes() == server.files[f"ok{i}.jpg"]
    assert (out / "flaky.jpg").read_bytes() == server.files["flaky.jpg"]
    assert not (out / "cut.jpg").exists() and not (out / "missing.jpg").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    before = server.counts.copy()
    second = download(config(ann, out))
    assert (second.downloaded, second.skipped, len(second.failures)) == (0, 6, 2)
    assert all(server.counts[n] == before[n] for n in names if n.startswith("ok") or n == "flaky.jpg")


def test_download_replaces_a_broken_file_and_verifies_what_it_gets(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "images"
    (out / "sub").mkdir(parents=True)
    body = server.files["ok0.jpg"]
    (out / "sub" / "ok0.jpg").write_bytes(body[: len(body) * 2 // 3])  # cut off by a non-atomic downloader
    ann = annotations(server, tmp_path, ["ok0.jpg", "page.jpg", "ok1.jpg"], **{"ok1.jpg": {"width": 7, "height": 7}})
    result = download(config(ann, out))
    assert result.downloaded == 1 and result.skipped == 0
    assert (out / "sub" / "ok0.jpg").read_bytes() == server.files["ok0.jpg"]
    reasons = {f.file_name: f.reason for f in result.failures}
    assert reasons["page.jpg"].startswith("not a valid image: an HTML file") and server.counts["page.jpg"] == 4
    assert "the record says 7x7" in reasons["sub/ok1.jpg"] and server.counts["ok1.jpg"] == 1
    assert not (out / "page.jpg").exists()


def test_a_file_cut_off_after_a_valid_header_is_not_complete(dive: Path) -> None:
    jpeg = min((dive / "images").iterdir()).read_bytes()
    with Image.open(io.BytesIO(jpeg)) as im:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    png = buf.getvalue()
    for data, fmt in ((jpeg, "JPEG"), (png, "PNG")):
        assert _ends_complete(data, fmt) and not _ends_complete(data[: len(data) * 2 // 3], fmt)


@pytest.mark.parametrize("name", ["../../escaped.jpg", "/tmp/escaped.jpg", "a/../../escaped.jpg"])
def test_download_refuses_file_names_outside_out(server: Server, tmp_path: Path, name: str) -> None:
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": name, "coco_url": f"{server.url}/ok0.jpg"}],
                               "annotations": []}))
    with pytest.raises(LabelFileError, match="outside the image folder"):
        download(config(ann, tmp_path / "out" / "images"))
    assert sum(server.counts.values()) == 0 and not (tmp_path / "escaped.jpg").exists()


def test_download_does_not_follow_a_symlinked_folder_out(server: Server, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "images"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    ann = annotations(server, tmp_path, ["ok0.jpg"])
    result = download(config(ann, out))
    assert "outside" in result.failures[0].reason and not list(outside.iterdir())
    bad_scheme = tmp_path / "b.json"
    bad_scheme.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg", "coco_url": "file:///etc/passwd"}],
                                      "annotations": []}))
    result = download(config(bad_scheme, tmp_path / "o2"))
    assert "only http and https" in result.failures[0].reason and not (tmp_path / "o2" / "x.jpg").exists()


def test_download_command_exits_1_with_one_error_line(server: Server, tmp_path: Path) -> None:
    ann = annotations(server, tmp_path, ["ok0.jpg", "missing.jpg"])
    code, stdout, stderr = invoke(download_command, ann, "--out", tmp_path / "img", "--backoff", "0", "--retries", "1",
                                  "--failures", tmp_path / "failed.csv", "-q")
    assert code == 1
    assert "2 images: 1 downloaded, 0 already complete, 1 failed" in stdout and "missing.jpg: HTTP 404" in stdout
    assert stderr.strip().splitlines() == [
        "Error: 1 of 2 downloads failed; run the same command again to retry them (complete files are skipped)"
    ]
    failed = pl.read_csv(tmp_path / "failed.csv")
    assert failed["file_name"].to_list() == ["missing.jpg"] and failed["reason"][0] == "HTTP 404 Not Found"


def test_a_failures_file_that_is_an_input_a_folder_or_among_the_images_is_refused_before_any_download(
        server: Server, tmp_path: Path) -> None:
    """`download coco.json --out dl --failures coco.json` once replaced the annotations by the failures CSV;
    `--failures dl/<an image>` replaced that image; `--failures dl` failed only after downloading everything."""
    ann = annotations(server, tmp_path, ["ok0.jpg", "missing.jpg"])
    out = tmp_path / "dl"
    code, _, err = invoke(download_command, ann, "--out", out, "--backoff", "0", "--retries", "0", "-q")
    assert code == 1, err
    image = out / "sub" / "ok0.jpg"
    (tmp_path / "folder").mkdir()
    refusals = {
        ann: f"the failures file {ann} is the annotations file {ann}, which it would replace: choose another "
             "failures path",
        image: f"the failures file {image} is inside the download folder {out}, which holds the images only: "
               "choose a failures path outside it",
        out / "failed.csv": f"the failures file {out / 'failed.csv'} is inside the download folder {out}, which holds "
                            "the images only: choose a failures path outside it",
        out: f"the failures file {out} is a folder; name the CSV file to write",
        tmp_path / "folder": f"the failures file {tmp_path / 'folder'} is a folder; name the CSV file to write",
        f"{tmp_path / 'new'}/": (f"--failures {tmp_path / 'new'}/ is a folder; "
                                 "name the file to write (a path inside it)"),
    }
    before = {p: p.read_bytes() for p in (ann, image)}
    requests = sum(server.counts.values())
    for failures, message in refusals.items():
        code, _, err = invoke(cli, "download", ann, "--out", out, "--failures", failures, "-q")
        assert code == 2, err
        assert err.splitlines() == [f"Error: {message}"]
        assert {p: p.read_bytes() for p in (ann, image)} == before and sum(server.counts.values()) == requests
    assert sorted(p.name for p in out.rglob("*")) == ["ok0.jpg", "sub"] and not (tmp_path / "new").exists()

    # A failures CSV from an earlier attempt, outside --out, is rewritten (re-running is how failures are retried).
    (tmp_path / "failed.csv").write_text("old")
    code, _, _ = invoke(download_command, ann, "--out", out, "--retries", "0", "--failures", tmp_path / "failed.csv")
    assert code == 1 and pl.read_csv(tmp_path / "failed.csv")["file_name"].to_list() == ["missing.jpg"]


def test_a_malformed_url_fails_that_file_only(server: Server, tmp_path: Path) -> None:
    names = ["ok0.jpg", "ok1.jpg"]
    ann = annotations(server, tmp_path, names)
    data = json.loads(ann.read_text())
    data["images"].append({"id": 9, "file_name": "broken.jpg", "coco_url": "http://[::1/broken.jpg"})
    ann.write_text(json.dumps(data))
    summary = download(config(ann, tmp_path / "images"))
    assert summary.downloaded == 2
    assert [(f.file_name, f.reason.startswith("malformed URL")) for f in summary.failures] == [("broken.jpg", True)]


def test_a_trickling_server_is_abandoned_not_waited_for(server: Server, tmp_path: Path) -> None:
    ann = annotations(server, tmp_path, ["trickle.jpg", "ok0.jpg"])
    start = time.monotonic()
    result = download(DownloadConfig(annotations=ann, out=tmp_path / "images", workers=2, retries=1, backoff=0.01,
                                     timeout=1.0))
    assert time.monotonic() - start < 10  # a byte every 0.2 s never trips the 1 s silence timeout on its own
    reasons = {f.file_name: f.reason for f in result.failures}
    assert reasons["trickle.jpg"].startswith("too slow:") and "after 2 attempts" in reasons["trickle.jpg"]
    assert result.downloaded == 1 and not [p for p in (tmp_path / "images").rglob("*") if p.name.endswith(".tmp")]


def test_ctrl_c_during_a_stalled_download_exits_at_once_and_leaves_no_temporary_file(
    server: Server, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    ann = annotations(server, tmp_path, ["silent.jpg"])
    out = tmp_path / "images"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen([sys.executable, "-m", "fathombatch", "download", str(ann), "--out", str(out),
                             "--timeout", "30", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while not server.counts["silent.jpg"] and time.monotonic() < deadline:  # the transfer has started
        time.sleep(0.05)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - sent < 5, "Ctrl-C waited for the stalled transfer"
    assert proc.returncode == 130 and err.decode().strip().startswith("Error: interrupted")
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_an_images_only_coco_file_downloads(server: Server, tmp_path: Path) -> None:
    # An evaluation set lists images (with coco_url) and may have no 'annotations' key at all.
    ann = annotations(server, tmp_path, ["ok0.jpg", "ok1.jpg"])
    data = json.loads(ann.read_text())
    ann.write_text(json.dumps({"images": data["images"]}))
    result = download(config(ann, tmp_path / "images"))
    assert (result.total, result.downloaded, len(result.failures)) == (2, 2, 0)
