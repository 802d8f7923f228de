"""GPU decoding through torchvision's nvJPEG binding: available wherever PyTorch has CUDA, even without DALI.

JPEGs are decoded in one batched call (``torchvision.io.decode_jpeg(..., device="cuda")``), resized on the GPU
(bilinear, antialiased) and normalised there; the batch stays on the GPU as a CUDA tensor. Other formats (PNG...), JPEGs
nvJPEG rejects, and JPEGs with an EXIF rotation are decoded by Pillow on the CPU and copied over: torchvision's CUDA
path ignores ``apply_exif_orientation`` (it only applies on the CPU), and every decoder must turn a rotated frame the
same way. A bad file still gets Pillow's specific message and never costs the others their scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fathombatch.decode.base import DecodedBatch, Decoder, ImageFile, read_batch
from fathombatch.decode.pil import decode_resized
from fathombatch.errors import DecodeError
from fathombatch.gpu import require_gpu
from fathombatch.preprocess import InputSpec, normalize


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
        self._mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1) * 255.0

    def _resize(self, chw_uint8: Any) -> Any:
        """(3, h, w) uint8 CUDA -> (3, H, W) float32 normalised."""
        torch = self._torch
        x = chw_uint8.unsqueeze(0).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=self.spec.size, mode="bilinear", antialias=True,
                                            align_corners=False)
        return ((x.clamp(0, 255) - self._mean) / self._std)[0]

    def _pil(self, image: ImageFile) -> Any:
        pixels = normalize(decode_resized(image, self.spec.size)[None], self.spec)[0]
        return self._torch.from_numpy(pixels).to(self.device)

    def decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        import torchvision.io as tio

        torch = self._torch
        read, sizes, errors = read_batch(paths)
        n = len(paths)
        decoders: list[str | None] = [None] * n
        rows: dict[int, Any] = {}
        jpegs: list[tuple[int, ImageFile]] = []
        for i, image in read:
            if image.format in ("JPEG", "MPO") and image.orientation == 1:
                jpegs.append((i, image))
            else:
                try:
                    rows[i], decoders[i] = self._pil(image), "pil"
                except DecodeError as exc:
                    errors[i] = str(exc)
        if jpegs:
            data = [torch.frombuffer(bytearray(img.data), dtype=torch.uint8) for _, img in jpegs]
            try:
                decoded = tio.decode_jpeg(data, mode=tio.ImageReadMode.RGB, device=self.device)
                for (i, _), img in zip(jpegs, decoded, strict=True):
                    rows[i], decoders[i] = self._resize(img), "nvjpeg"
            except RuntimeError:
                # One bad JPEG fails the batched call: decode one by one, Pillow for those nvJPEG rejects.
                for (i, image), raw in zip(jpegs, data, strict=True):
                    try:
                        img = tio.decode_jpeg(raw, mode=tio.ImageReadMode.RGB, device=self.device)
                        rows[i], decoders[i] = self._resize(img), "nvjpeg"
                    except RuntimeError:
                        try:
                            rows[i], decoders[i] = self._pil(image), "pil"
                        except DecodeError as exc:
                            errors[i] = str(exc)
        ok = sorted(rows)
        images = (torch.stack([rows[i] for i in ok]) if ok
                  else torch.empty((0, 3, *self.spec.size), dtype=torch.float32, device=self.device))
        return DecodedBatch(images=images, ok=ok, sizes=sizes, errors=errors, decoders=decoders)

