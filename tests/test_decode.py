from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fathombatch.decode import create_decoder, discover, read_image_file, resolve_decoder_name
from fathombatch.errors import DecodeError, UsageError
from fathombatch.preprocess import InputSpec

SPEC = InputSpec(height=48, width=64)


def make_image(path: Path, size: tuple[int, int] = (80, 60), fmt: str = "JPEG", seed: int = 0, **save: object) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(3,), dtype=np.uint8)
    arr = np.broadcast_to(base, (size[1], size[0], 3)).copy()
    arr[: size[1] // 2, : size[0] // 3] = 255 - base  # a block, so orientation is visible
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt, **save)
    return path


def test_discover_is_recursive_case_insensitive_sorted(tmp_path: Path) -> None:
    for rel in ["b.JPG", "a/c.png", "a/d.jpeg", "a/e.txt", "z.Png", "a/b/f.gif"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert discover(tmp_path) == ["a/c.png", "a/d.jpeg", "b.JPG", "z.Png"]


def test_discover_walks_a_symlink_loop_once_and_lists_no_file_twice(tmp_path: Path) -> None:
    make_image(tmp_path / "dive" / "sub" / "x.jpg")
    os.symlink("..", tmp_path / "dive" / "sub" / "loop")  # sub/loop -> dive
    os.symlink("sub", tmp_path / "dive" / "alias")  # a second route into sub
    files = discover(tmp_path / "dive")
    assert len(files) == 1 and files[0].endswith("x.jpg")


def test_discover_reports_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        discover(tmp_path / "f")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty file \(0 bytes\)"),
        (b"hello, this is not an image\n", "a text file, not an image"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "an HTML file, not an image"),
        (bytes(range(256)) * 4, "not a recognised image format"),
        (b"\xff\xd8\xff\xe0", "a JPEG file whose header is corrupt or cut off"),
        (b"\x89PNG\r\n\x1a\n", "a PNG file whose header is corrupt or cut off"),
    ],
)
def test_read_image_file_gives_specific_messages(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=message):
        read_image_file(path)


def test_broken_symlink_and_bomb(tmp_path: Path) -> None:
    os.symlink(tmp_path / "missing.jpg", tmp_path / "link.jpg")
    with pytest.raises(DecodeError, match="broken symbolic link"):
        read_image_file(tmp_path / "link.jpg")
    # A PNG header declaring 20000 x 20000 pixels (400 MP): refused from the header alone.
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = (20000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # keep the IHDR checksum valid
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="pixel limit"):
        read_image_file(tmp_path / "bomb.png")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to drop privileges in a child process")
def test_an_unreadable_file_is_permission_denied_even_for_a_root_test_run() -> None:
    """As root nothing is unreadable, so the check runs in a forked child that has become ``nobody``."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="fb-perm-", dir="/tmp"))  # not under pytest's 0700 folder
    try:
        folder.chmod(0o755)
        locked = make_image(folder / "locked.jpg")
        locked.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(DecodeError, match="^permission denied$"):
                read_image_file(locked)
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, try to read, report the message, never return into pytest
            code = 1
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    read_image_file(locked)
                    message = "read succeeded"
                except DecodeError as exc:
                    message = str(exc)
                os.write(write_end, message.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as fh:
            message = fh.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert message == "permission denied"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_exif_orientation_swaps_the_reported_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = make_image(tmp_path / "rot.jpg", size=(80, 60), exif=exif.tobytes())
    info = read_image_file(path)
    assert (info.width, info.height) == (60, 80) and info.orientation == 6


@pytest.mark.parametrize("name", ["pil", "dali"])
def test_decoders_isolate_bad_files(tmp_path: Path, name: str) -> None:
    good = [make_image(tmp_path / f"g{i}.jpg", seed=i) for i in range(3)]
    png = make_image(tmp_path / "p.png", fmt="PNG", seed=9)
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(good[0].read_bytes()[:200])
    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    paths = [good[0], truncated, good[1], empty, png, good[2]]
    with create_decoder(name, SPEC, batch_size=8, threads=2) as decoder:
        batch = decoder.decode(paths)
        clean = decoder.decode([good[0], good[1], png, good[2]])
    assert batch.ok == [0, 2, 4, 5]
    assert batch.errors[3] == "empty file (0 bytes)"
    assert "truncated" in (batch.errors[1] or "").lower()
    assert batch.images.shape == (4, 3, 48, 64) and batch.images.dtype == np.float32
    assert batch.sizes[0] == (80, 60) and batch.sizes[3] is None
    # one bad file never changes the others' pixels
    np.testing.assert_allclose(batch.images, clean.images, atol=1e-6)


def test_dali_and_pil_agree_closely(tmp_path: Path) -> None:
    paths = [make_image(tmp_path / f"g{i}.jpg", size=(320, 200), seed=i) for i in range(3)]
    with create_decoder("dali", SPEC) as dali, create_decoder("pil", SPEC) as pil:
        a, b = dali.decode(paths).images, pil.decode(paths).images
    # Both resize with antialiased bilinear filters; they differ only in rounding and filter details.
    assert np.abs(a - b).mean() < 0.05


def test_pil_normalises_with_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("RGB", (10, 10), (128, 128, 128)).save(path)
    with create_decoder("pil", InputSpec(height=8, width=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))) as d:
        img = d.decode([path]).images[0]
    expected = [(128 / 255 - 0.5) / s for s in (0.25, 0.5, 1.0)]
    np.testing.assert_allclose(img[:, 0, 0], expected, rtol=1e-4)


def test_decoder_names() -> None:
    # On the CPU Pillow decodes 1080p JPEGs for 224 px about 2x faster than DALI's CPU backend (issue 13).
    assert resolve_decoder_name("auto") == "pil"
    assert resolve_decoder_name("auto", None) == "pil"
    # On a GPU, DALI's nvJPEG (DALI is a Linux dependency of the package); only the name is resolved here.
    assert resolve_decoder_name("auto", 0) == "dali"
    assert resolve_decoder_name("dali") == "dali"
    with pytest.raises(UsageError, match="unknown decoder"):
        resolve_decoder_name("opencv")


# --- issue 14: a failure of the decoder itself is not a bad file ---------------------------------------------------


@pytest.mark.parametrize(
    ("message", "systemic"),
    [
        ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.8 GiB total capacity)", True),
        ("decode_jpegs_cuda: torchvision not compiled with nvJPEG support", True),
        ("CUDA error: an illegal memory access was encountered", True),
        ("Error in thread 0: [/opt/dali/dali/core/mm] CUDA allocation failed: cudaErrorMemoryAllocation", True),
        ("Error while decoding JPEG images: Failed to get image info: 2", False),
        ("Error in thread 0: nvImageCodec failure: '#6:Failed to decode: corrupted JPEG stream'", False),
        ("Unknown chroma subsampling", False),
    ],
)
def test_systemic_failures_are_told_from_bad_files(message: str, systemic: bool) -> None:
    from fathombatch.decode.fallback import systemic_reason

    reason = systemic_reason(RuntimeError(f"{message}\nTraceback details\n"))
    assert (reason == message) if systemic else reason is None


def _failing_pipeline(calls: list[int], message: str) -> object:
    def run_pipeline(files: list[object]) -> object:
        calls.append(len(files))
        raise RuntimeError(message)

    return run_pipeline


def test_a_systemic_dali_failure_switches_the_run_to_pillow_once(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    paths = [make_image(tmp_path / f"g{i}.jpg", seed=i) for i in range(6)]
    calls: list[int] = []
    with create_decoder("dali", SPEC, batch_size=3, threads=2) as dali, create_decoder("pil", SPEC) as pil:
        dali.run_pipeline = _failing_pipeline(calls, "CUDA out of memory. Tried to allocate 8.00 GiB")
        batches = [dali.decode(paths[:3]), dali.decode(paths[3:])]
        expected = pil.decode(paths).images
    # one failed call, no pipeline rebuilt and retried per file, no second attempt on the next batch
    assert calls == [3]
    assert [b.ok for b in batches] == [[0, 1, 2], [0, 1, 2]]
    assert all(d == "pil" for b in batches for d in b.decoders)
    np.testing.assert_allclose(np.concatenate([b.images for b in batches]), expected, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CUDA out of memory" in warnings[0] and "rest of the run" in warnings[0]


def test_per_file_dali_fallbacks_are_counted_and_warned_once(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    good = [make_image(tmp_path / f"g{i}.jpg", size=(160, 120), seed=i) for i in range(4)]
    bad = []
    for i in range(2):
        bad.append(tmp_path / f"t{i}.jpg")
        bad[-1].write_bytes(good[i].read_bytes()[:-2])  # no end-of-image marker: DALI and Pillow both reject it
    with create_decoder("dali", SPEC, batch_size=3, threads=2) as dali:
        first, second = dali.decode([good[0], bad[0], good[1]]), dali.decode([good[2], bad[1], good[3]])
    assert first.ok == second.ok == [0, 2]
    assert first.decoders == second.decoders == ["dali", None, "dali"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("2 file(s) the dali decoder rejected")


def test_dali_decoders_ask_for_fancy_upsampling_on_both_backends() -> None:
    pytest.importorskip("nvidia.dali", reason="needs DALI")
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import backend, pipeline_def

    from fathombatch.decode.dali import image_decoder_args

    gpu, cpu = image_decoder_args(True, 0.65), image_decoder_args(False, 0.65)
    assert gpu["device"] == "mixed" and cpu["device"] == "cpu"
    assert gpu["jpeg_fancy_upsampling"] is True and cpu["jpeg_fancy_upsampling"] is True
    schema = backend.GetSchema("decoders__Image")  # every name must be an argument this DALI knows
    assert all(schema.HasArgument(name) for name in gpu if name != "device")

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe() -> object:
        encoded = fn.external_source(name="encoded", dtype=types.DALIDataType.UINT8, ndim=1)
        return fn.decoders.image(encoded, output_type=types.DALIImageType.RGB, **cpu)

    assert b"jpeg_fancy_upsampling" in pipe().serialize()  # it reaches the pipeline graph


def test_the_gpu_decoders_batched_resize_equals_one_resize_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """nvjpeg's resize groups images of one shape into one call; on the CPU that must change no pixel."""
    import torch

    from fathombatch.decode import nvjpeg

    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 60, 80), (3, 90, 70), (3, 60, 80), (1, 60, 80), (3, 90, 70)] + [(3, 50, 50)] * 5
    images = [torch.randint(0, 256, s, dtype=torch.uint8, generator=gen) for s in shapes]
    mean = torch.tensor(SPEC.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(SPEC.std).view(1, 3, 1, 1) * 255.0
    monkeypatch.setattr(nvjpeg, "RESIZE_CHUNK", 2)  # several chunks within one shape group
    together = nvjpeg.resize_normalise(images, SPEC.size, mean, std)
    for img, got in zip(images, together, strict=True):
        alone = nvjpeg.resize_normalise([img], SPEC.size, mean, std)[0]
        assert got.shape == (3, *SPEC.size)
        torch.testing.assert_close(got, alone, rtol=0, atol=1e-5)
    # and each row is its own image, in the order given (not its group's first)
    assert not torch.equal(together[0], together[2])
