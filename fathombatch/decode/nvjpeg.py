"""GPU decoding through torchvision's nvJPEG binding: available wherever PyTorch has CUDA, even without DALI.

JPEGs are decoded in batched calls (``torchvision.io.decode_jpeg(..., device="cuda")``, a batch in parts of
:data:`NVJPEG_PART` files, the next part read while nvJPEG decodes this one), resized on the GPU (bilinear,
antialiased, one call per group of equal-shape images) and normalised there; the batch stays on the GPU as a CUDA
tensor. Other formats (PNG...), JPEGs nvJPEG rejects, and JPEGs with an EXIF rotation are decoded by Pillow on the
CPU and copied over: torchvision's CUDA path ignores ``apply_exif_orientation`` (it only applies on the CPU), and
every decoder must turn a rotated frame the same way. A bad file still gets Pillow's specific message and never costs
the others their scores; a failure that is not about a file (CUDA out of memory, torchvision built without nvJPEG)
switches the rest of the run to Pillow once, with one warning (:mod:`fathombatch.decode.fallback`).

Streams. ``decode_jpeg(device="cuda")`` allocates its output on the caller's current stream but writes it on a
stream of its own, which it synchronises with itself only, and then makes the caller's stream wait for it
(torchvision's ``decode_jpegs_cuda.cpp``). Memory freed on the caller's stream while kernels still read it (the
previous batch, still being resized or scored) can therefore be handed to nvJPEG and overwritten. So the decoder
works on a CUDA stream of its own: it synchronises that stream before every nvJPEG call (nothing of its own is
still reading memory the allocator may hand out), allocates everything there, and hands the finished batch to the
caller's stream with ``wait_stream`` (the caller sees the finished pixels) and ``record_stream`` (the allocator does
not reuse the batch's memory until the caller's work queued on it has run).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fathombatch.decode.base import DecodedBatch, Decoder, ImageFile, read_batch
from fathombatch.decode.fallback import PillowFallback
from fathombatch.decode.pil import decode_resized
from fathombatch.errors import DecodeError
from fathombatch.gpu import require_gpu
from fathombatch.preprocess import InputSpec, normalize

#: Files per nvJPEG call: a batch is decoded in parts so that reading the next part overlaps decoding this one.
NVJPEG_PART = 64
#: Images resized together in one call: bounds the float32 copy of full-size frames (32 x 1080p is 0.8 GB).
RESIZE_CHUNK = 32


def resize_normalise(images: Sequence[Any], size: tuple[int, int], mean: Any, std: Any) -> list[Any]:
    """Resize and normalise decoded images, one batched call per group of equal shape.

    Args:
        images: (C, h, w) uint8 tensors (C is 1 or 3), all on one device, of any sizes.
        size: (H, W) of the model input, in pixels.
        mean, std: (1, 3, 1, 1) float32 tensors on that device, in 0..255 units.

    Returns:
        one (3, H, W) float32 tensor per image, in the order given. Bilinear with antialiasing, like one call per
        image (each sample of a batched ``interpolate`` is computed alone), but with a few kernel launches per
        group instead of several per image: per-image calls cost the decoder thread 50 ms a 256-image batch
        on the H200, grouped 10 ms, against nvJPEG's 67 ms (docs/gpu.md, "Figures").
    """
    import torch

    out: list[Any] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    for positions in groups.values():
        for start in range(0, len(positions), RESIZE_CHUNK):
            chunk = positions[start : start + RESIZE_CHUNK]
            x = torch.stack([images[i] for i in chunk]).float()
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            x = (x.clamp(0, 255) - mean) / std
            for k, i in enumerate(chunk):
                out[i] = x[k]
    return out


class NvjpegDecoder(Decoder):
    """Decode JPEGs with nvJPEG on GPU ``device`` (default 0); everything else with Pillow."""

    name = "nvjpeg"

    def __init__(self, spec: InputSpec, *, batch_size: int = 32, threads: int | None = None, device: int | None = None
                 ) -> None:
        super().__init__(spec, batch_size=batch_size, threads=threads)
        self.gpu = 0 if device is None else device
        require_gpu("the nvjpeg decoder", [self.gpu])
        import torch

        self._torch = torch
        self.device = torch.device("cuda", self.gpu)
        self.stream = torch.cuda.Stream(device=self.device)  # the decoder's own; see the module docstring
        with torch.cuda.stream(self.stream):
            self._mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1) * 255.0
            self._std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.stream.synchronize()
        self.fallback = PillowFallback(self, to_device=self._on_device)
        # Reads the next part's files while nvJPEG decodes this part's (see _decode). One thread: reading parses
        # headers with Pillow, mostly under the GIL, and a pool of 17 readers measured slower than one (76 vs 48 ms
        # a 256-file batch on the H200 machine's 16 cores, benchmarks/results/gpu_check_pool_reads.json).
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fb-nvjpeg-read")

    def decode_jpegs(self, data: list[Any]) -> list[Any]:
        """nvJPEG-decode CPU uint8 byte tensors into (3, h, w) uint8 CUDA tensors, on :attr:`stream`.

        The one call into nvJPEG: tests replace it on an instance to make it fail as a broken GPU would.
        """
        import torchvision.io as tio

        self.stream.synchronize()  # whatever the allocator hands nvJPEG is no longer read by this stream
        return list(tio.decode_jpeg(data, mode=tio.ImageReadMode.RGB, device=self.device))

    def _resize(self, chw_uint8: Any) -> Any:
        """(3, h, w) uint8 CUDA -> (3, H, W) float32 normalised."""
        return resize_normalise([chw_uint8], self.spec.size, self._mean, self._std)[0]

    def _pil(self, image: ImageFile) -> Any:
        pixels = normalize(decode_resized(image, self.spec.size)[None], self.spec)[0]
        return self._torch.from_numpy(pixels).to(self.device)

    def _on_device(self, batch: DecodedBatch) -> DecodedBatch:
        """Copy a Pillow batch (after a switch to Pillow) to the GPU, so callers see one kind of batch."""
        on_gpu: Any = self._torch.from_numpy(batch.images).to(self.device)
        batch.images = on_gpu
        return batch

    def decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        torch = self._torch
        consumer = torch.cuda.current_stream(self.device)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            batch = self.fallback.decode(paths, self._decode)
        consumer.wait_stream(self.stream)
        images: Any = batch.images  # a CUDA tensor (DecodedBatch names the CPU type)
        images.record_stream(consumer)
        return batch

    def _decode_jpegs_alone(self, jpegs: list[tuple[int, ImageFile]], data: list[Any], rows: dict[int, Any],
                            decoders: list[str | None], errors: list[str | None]) -> None:
        """After a batched call failed: one nvJPEG call per file, Pillow for the files nvJPEG rejects."""
        for (i, image), raw in zip(jpegs, data, strict=True):
            try:
                rows[i], decoders[i] = self._resize(self.decode_jpegs([raw])[0]), "nvjpeg"
                continue
            except RuntimeError as exc:
                self.fallback.file_failed(exc)  # raises DecoderUnusable when nvJPEG itself failed
            try:
                rows[i], decoders[i] = self._pil(image), "pil"
            except DecodeError as exc:
                errors[i] = str(exc)

    def _decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        """Decode a batch in parts of :data:`NVJPEG_PART` files: part k+1 is read while nvJPEG decodes part k.

        Reading a whole batch and then decoding it made the two take turns (about 50 + 70 ms a 256-file batch of
        1080p JPEGs on an H200); nvJPEG's call releases the GIL, so the reader thread runs during it.
        """
        torch = self._torch
        n = len(paths)
        sizes: list[tuple[int, int] | None] = [None] * n
        errors: list[str | None] = [None] * n
        decoders: list[str | None] = [None] * n
        rows: dict[int, Any] = {}
        parts = [range(start, min(start + NVJPEG_PART, n)) for start in range(0, n, NVJPEG_PART)]
        reading = self._reader.submit(read_batch, [paths[i] for i in parts[0]]) if parts else None
        for k, part in enumerate(parts):
            read, part_sizes, part_errors = reading.result() if reading is not None else ([], [], [])
            if k + 1 < len(parts):
                reading = self._reader.submit(read_batch, [paths[i] for i in parts[k + 1]])
            for j, i in enumerate(part):
                sizes[i], errors[i] = part_sizes[j], part_errors[j]
            self._decode_part([(part[j], image) for j, image in read], rows, decoders, errors)
        ok = sorted(rows)
        images = (torch.stack([rows[i] for i in ok]) if ok
                  else torch.empty((0, 3, *self.spec.size), dtype=torch.float32, device=self.device))
        return DecodedBatch(images=images, ok=ok, sizes=sizes, errors=errors, decoders=decoders)

    def _decode_part(self, read: list[tuple[int, ImageFile]], rows: dict[int, Any], decoders: list[str | None],
                     errors: list[str | None]) -> None:
        """Decode files already read (batch positions and contents) into ``rows``; JPEGs in one nvJPEG call."""
        jpegs: list[tuple[int, ImageFile]] = []
        for i, image in read:
            if image.format in ("JPEG", "MPO") and image.orientation == 1:
                jpegs.append((i, image))
            else:
                try:
                    rows[i], decoders[i] = self._pil(image), "pil"
                except DecodeError as exc:
                    errors[i] = str(exc)
        if not jpegs:
            return
        data = [self._torch.frombuffer(bytearray(img.data), dtype=self._torch.uint8) for _, img in jpegs]
        try:
            decoded = self.decode_jpegs(data)
            resized = resize_normalise(decoded, self.spec.size, self._mean, self._std)
            for (i, _), row in zip(jpegs, resized, strict=True):
                rows[i], decoders[i] = row, "nvjpeg"
        except RuntimeError as exc:
            # One bad JPEG fails the batched call: decode one by one, Pillow for those nvJPEG rejects.
            self.fallback.batch_failed(exc)
            self._decode_jpegs_alone(jpegs, data, rows, decoders, errors)

    def close(self) -> None:
        self._reader.shutdown(wait=True)
        self.fallback.close()
