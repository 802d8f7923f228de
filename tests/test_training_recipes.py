"""Issue 3: presets, schedules, losses, augmentation, early stopping, mixed precision, pretrained weights."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fathombatch.errors import EngineError, TrainingError, UsageError
from fathombatch.models import create_model
from fathombatch.models.augment import AugmentConfig, augment_batch, recipe
from fathombatch.models.losses import AsymmetricLoss, class_weights, create_loss
from fathombatch.models.presets import PRESETS, describe_presets
from fathombatch.models.train import TrainConfig, config_from, lr_factor, resolve_amp, train

SEED = {"seed-logreg": ("logreg", 3), "seed-mlp": ("mlp", 3), "seed-resnet18": ("resnet18", 15),
        "seed-efficientnet-b0": ("efficientnet_b0", 80), "seed-densenet121": ("densenet121", 10),
        "seed-resnet18-cutout": ("resnet18", 12)}


@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_presets_carry_the_study_hyperparameters(name: str) -> None:
    cfg = config_from(name, images=Path("i"), labels=Path("l.csv"), out=Path("o"))
    arch, epochs = SEED[name]
    assert (cfg.arch, cfg.epochs) == (arch, epochs)
    assert (cfg.batch_size, cfg.lr, cfg.optimizer, cfg.img_size) == (32, 1e-3, "adam", 224)
    assert cfg.loss == ("mse" if name == "seed-mlp" else "bce")
    assert cfg.pretrained == (name in ("seed-efficientnet-b0", "seed-densenet121"))
    assert cfg.augmentation == (AugmentConfig(cutout=16) if name == "seed-resnet18-cutout" else AugmentConfig())
    assert cfg.preset == name


def test_preset_values_can_be_overridden_and_listed() -> None:
    cfg = config_from("densenet121-plus", images=Path("i"), labels=Path("l.csv"), out=Path("o"), epochs=2, loss="bce",
                      pretrained=False)
    assert (cfg.epochs, cfg.loss, cfg.pretrained) == (2, "bce", False)
    assert cfg.schedule == "cosine" and cfg.augment == "underwater"  # untouched preset values remain
    text = describe_presets()
    for name in PRESETS:
        assert name in text
    assert "MAP@20 0.7532" in text
    with pytest.raises(UsageError, match="unknown preset 'seed-vgg'"):
        config_from("seed-vgg", images=Path("i"), labels=Path("l"), out=Path("o"))


def test_learning_rate_schedules() -> None:
    base = TrainConfig(images=Path("i"), labels=Path("l"), out=Path("o"), epochs=10)
    cosine = dataclasses.replace(base, schedule="cosine", warmup_epochs=1)
    assert lr_factor(cosine, 0, 10) == pytest.approx(0.1)  # first warm-up step
    assert lr_factor(cosine, 9, 10) == pytest.approx(1.0)  # end of warm-up
    assert lr_factor(cosine, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 55, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(cosine, 100, 10) == pytest.approx(0.0, abs=1e-12)
    step = dataclasses.replace(base, schedule="step", step_epochs=3, step_gamma=0.5)
    assert [lr_factor(step, e * 10, 10) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(base, 57, 10) == 1.0


def test_losses() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    counts = np.array([10, 1, 0])
    bce = create_loss("bce", counts, 100)(logits, target)
    assert float(bce) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, target)))
    w = class_weights(counts, 100)
    assert w.tolist() == pytest.approx([3.0, math.sqrt(99), 1.0])
    mse = create_loss("mse", counts, 100)(logits, target)
    assert float(mse) == pytest.approx(float(((torch.sigmoid(logits) - target) ** 2).mean()))
    # ASL with gamma 0 and no clipping is plain BCE (summed over classes, averaged, divided by C)
    plain = AsymmetricLoss(gamma_pos=0, gamma_neg=0, clip=0)(logits, target)
    assert float(plain) == pytest.approx(float(bce), rel=1e-5)
    # focusing shrinks the loss of easy negatives
    assert float(AsymmetricLoss()(logits, target)) < float(plain)


def test_augmentation_is_reproducible_and_does_what_it_says() -> None:
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
    assert augment_batch(batch, recipe("none"), torch.Generator().manual_seed(0)) is batch
    a = augment_batch(batch, recipe("underwater-cutout"), torch.Generator().manual_seed(1))
    b = augment_batch(batch, recipe("underwater-cutout"), torch.Generator().manual_seed(1))
    c = augment_batch(batch, recipe("underwater-cutout"), torch.Generator().manual_seed(2))
    assert a.shape == batch.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    cut = augment_batch(batch, AugmentConfig(cutout=8), torch.Generator().manual_seed(0))
    changed = (cut != batch).any(axis=3)
    assert all(0 < changed[i].sum() <= 64 for i in range(4))  # one square of at most 8x8 per image
    flips = [augment_batch(batch[:1], AugmentConfig(hflip=True), torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(np.array_equal(f[0], batch[0, :, ::-1]) for f in flips)
    assert any(np.array_equal(f[0], batch[0]) for f in flips)


def test_amp_modes() -> None:
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) == torch.bfloat16
    assert resolve_amp("auto", cpu) in (None, torch.bfloat16)


def tiny(dive: Path, out: Path, **kw: object) -> TrainConfig:
    values = {"images": dive / "images", "labels": dive / "train.csv", "out": out, "arch": "mlp", "epochs": 2,
              "img_size": 16, "batch_size": 8, **kw}
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_early_stopping_on_held_out_map(dive: Path, tmp_path: Path) -> None:
    # A learning rate this small leaves the held-out MAP@20 unchanged, so it never improves after epoch 1.
    result = train(tiny(dive, tmp_path / "r", epochs=6, lr=1e-12, early_stop=2))
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_improved_recipe_trains_with_every_option(dive: Path, tmp_path: Path) -> None:
    result = train(tiny(dive, tmp_path / "r", arch="resnet18", loss="asl", optimizer="adamw", weight_decay=1e-4,
                        schedule="cosine", warmup_epochs=0.5, augment="underwater-cutout", cutout=4, amp="bf16"))
    assert len(result.history) == 2
    assert result.history[-1].lr == pytest.approx(0.0, abs=1e-12)  # cosine reaches 0 at the last step
    assert all(np.isfinite(m.train_loss) for m in result.history)


def test_torchvision_pretrained_offline_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import urllib.error

    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(TrainingError, match="may be offline - pass weights PATH"):
        create_model("resnet18", 5, pretrained=True)


def test_local_weights_file(tmp_path: Path) -> None:
    source = create_model("resnet18", 5)
    torch.save(source.backbone.state_dict(), tmp_path / "backbone.pt")
    loaded = create_model("resnet18", 5, weights=tmp_path / "backbone.pt")
    for a, b in zip(source.backbone.parameters(), loaded.backbone.parameters(), strict=True):
        assert torch.equal(a, b)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EngineError, match="weights file .*junk.pt is not a PyTorch file that can be loaded safely"):
        create_model("resnet18", 5, weights=tmp_path / "junk.pt")


def test_batches_never_leave_a_single_image_alone() -> None:
    from fathombatch.models.train import batches

    assert [len(b) for b in batches(np.arange(9), 4)] == [4, 5]
    assert [len(b) for b in batches(np.arange(10), 4)] == [4, 4, 2]
    assert [len(b) for b in batches(np.arange(1), 4)] == [1]
    assert sorted(np.concatenate(batches(np.arange(13)[::-1], 4)).tolist()) == list(range(13))
