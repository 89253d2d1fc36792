"""ResNet v1 (He et al. 2015) and v2, pre-activation (He et al. 2016, the seed's), in one class.

v1 blocks end in ``add -> relu``; v2 blocks start with ``bn -> relu`` and add the shortcut to the
raw convolution output, so the stack ends with one more ``bn -> relu`` before pooling. The entry
points only choose block type and depths; ``width`` scales every stage's channels for small demos.
``stem`` picks the input layers (timm's ``stem_type`` idea): ``imagenet`` (7x7 stride 2 and a
max-pool: 224 px leaves 56 x 56) or ``small`` (one 3x3 stride-1 convolution, no pool: for 32-64 px
images, where the ImageNet stem would leave 8 x 8 before the first stage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from trainer.models.registry import register_model

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]

STAGE_CHANNELS = (64, 128, 256, 512)
STEMS = ("imagenet", "small")


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, cin: int, planes: int, stride: int, preact: bool, norm: NormLayer, act: ActLayer
    ) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.preact = preact
        # v2 normalises the block input; v1 normalises after each convolution
        self.bn0 = norm(cin) if preact else nn.Identity()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, cout)
        self.bn2 = nn.Identity() if preact else norm(cout)
        self.act = act()
        self.shortcut = _shortcut(cin, cout, stride, preact, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            x = self.act(self.bn0(x))
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.preact:
            return out + identity
        return self.act(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(
        self, cin: int, planes: int, stride: int, preact: bool, norm: NormLayer, act: ActLayer
    ) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.preact = preact
        self.bn0 = norm(cin) if preact else nn.Identity()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm(planes)
        self.conv3 = conv1x1(planes, cout)
        self.bn3 = nn.Identity() if preact else norm(cout)
        self.act = act()
        self.shortcut = _shortcut(cin, cout, stride, preact, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            x = self.act(self.bn0(x))
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.preact:
            return out + identity
        return self.act(out + identity)


def _shortcut(cin: int, cout: int, stride: int, preact: bool, norm: NormLayer) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    # v2 projects the already normalised input, so it needs no norm of its own
    if preact:
        return conv1x1(cin, cout, stride)
    return nn.Sequential(conv1x1(cin, cout, stride), norm(cout))


class ResNet(nn.Module):
    """Stem, four stages of residual blocks, global average pooling, linear head."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        *,
        preact: bool,
        num_classes: int = 1000,
        width: float = 1.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = lambda: nn.ReLU(inplace=True),
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        channels = [max(8, round(c * width)) for c in STAGE_CHANNELS]
        self.stem_type = stem
        self.stem = make_stem(stem, channels[0], norm_layer, act_layer)
        stages: list[nn.Module] = []
        cin = channels[0]
        for i, (planes, depth) in enumerate(zip(channels, layers, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(cin, planes, stride, preact, norm_layer, act_layer))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        # v2 blocks leave their output un-normalised: one last bn -> relu before pooling
        self.final = nn.Sequential(norm_layer(cin), act_layer()) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)
        self.threshold: nn.Linear | None = None  # AUM's extra class: add_threshold_class
        self._init_weights()

    def add_threshold_class(self) -> None:
        """One more output, in training steps only: the fake class of AUM's threshold samples
        (``--threshold-samples``). Evaluation, the predictions and the exported model keep
        ``num_classes`` outputs; checkpoints hold its weights (``threshold.*``)."""
        self.threshold = nn.Linear(self.num_features, 1)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(self.pool(self.forward_features(x)), 1)
        logits = self.fc(pooled)
        if self.threshold is not None and self.training:
            logits = torch.cat([logits, self.threshold(pooled)], dim=1)
        return logits


def make_stem(kind: str, cout: int, norm: NormLayer, act: ActLayer) -> nn.Sequential:
    """The layers before the first stage: ``imagenet`` downsamples by 4, ``small`` by 1."""
    if kind == "imagenet":
        return nn.Sequential(
            nn.Conv2d(3, cout, 7, stride=2, padding=3, bias=False),
            norm(cout),
            act(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    if kind == "small":
        return nn.Sequential(
            nn.Conv2d(3, cout, 3, stride=1, padding=1, bias=False), norm(cout), act()
        )
    raise ValueError(f"unknown stem {kind!r}; choose from: {', '.join(STEMS)}")


def _resnet(block: type[BasicBlock | Bottleneck], layers: Sequence[int], preact: bool, **kw):
    return ResNet(block, layers, preact=preact, **kw)


# --- v1 -------------------------------------------------------------------------------------
@register_model
def resnet18_v1(**kw) -> ResNet:
    return _resnet(BasicBlock, (2, 2, 2, 2), False, **kw)


@register_model
def resnet34_v1(**kw) -> ResNet:
    return _resnet(BasicBlock, (3, 4, 6, 3), False, **kw)


@register_model
def resnet50_v1(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 4, 6, 3), False, **kw)


@register_model
def resnet101_v1(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 4, 23, 3), False, **kw)


@register_model
def resnet152_v1(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 8, 36, 3), False, **kw)


@register_model
def resnet200_v1(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 24, 36, 3), False, **kw)


# --- v2 (pre-activation) ----------------------------------------------------------------------
@register_model
def resnet18_v2(**kw) -> ResNet:
    return _resnet(BasicBlock, (2, 2, 2, 2), True, **kw)


@register_model
def resnet34_v2(**kw) -> ResNet:
    return _resnet(BasicBlock, (3, 4, 6, 3), True, **kw)


@register_model
def resnet50_v2(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 4, 6, 3), True, **kw)


@register_model
def resnet101_v2(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 4, 23, 3), True, **kw)


@register_model
def resnet152_v2(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 8, 36, 3), True, **kw)


@register_model
def resnet200_v2(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 24, 36, 3), True, **kw)


@register_model
def resnet269_v2(**kw) -> ResNet:
    return _resnet(Bottleneck, (3, 30, 48, 8), True, **kw)
