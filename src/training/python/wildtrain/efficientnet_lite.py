"""EfficientNet-Lite0/1/2 (Google's mobile variant of EfficientNet), from one table.

Lite differs from EfficientNet-B*: no squeeze-excite and ReLU6 instead of swish (both quantise
badly), and the 32-channel stem and 1280-channel head stay fixed while the width multiplier scales
everything in between; the first and last stages keep one block whatever the depth multiplier.
Convolutions use TensorFlow "SAME" padding because the released ImageNet weights were trained in
TensorFlow: a stride-2 conv on an even-sized map pads only the bottom/right, and symmetric padding
would shift every downsampled map by half a pixel.

Layer names are our own (stem / blocks.N.{expand,depthwise,project} / head / fc); weights.py maps
the PyTorch port's names onto them explicitly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Uniform


@dataclass(frozen=True)
class Stage:
    kernel: int
    repeats: int
    stride: int
    expand: int
    out: int


@dataclass(frozen=True)
class Scaling:
    width: float
    depth: float
    resolution: int
    dropout: float


# EfficientNet-B0's stages (MnasNet-like MBConv), which every Lite variant scales.
BASE_STAGES = (
    Stage(3, 1, 1, 1, 16),
    Stage(3, 2, 2, 6, 24),
    Stage(5, 2, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(5, 3, 1, 6, 112),
    Stage(5, 4, 2, 6, 192),
    Stage(3, 1, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # TensorFlow's; the imported running variances assume it
DROP_CONNECT = 0.2

NET_TABLE: dict[str, Scaling] = {
    "EfficientNetLite0": Scaling(1.0, 1.0, 224, 0.2),
    "EfficientNetLite1": Scaling(1.0, 1.1, 240, 0.2),
    "EfficientNetLite2": Scaling(1.1, 1.2, 260, 0.3),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TF's round_filters: scale, round to a multiple of 8, never lose more than 10 %."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(index: int, stage: Stage, depth: float) -> int:
    if index in (0, len(BASE_STAGES) - 1):
        return stage.repeats
    return int(math.ceil(stage.repeats * depth))


class ConvBN(nn.Layer):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True, lr_mult: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, kernel, stride=stride, padding="SAME", groups=groups,
                              weight_attr=ParamAttr(learning_rate=lr_mult), bias_attr=False)
        # momentum 0.9 (not TF's 0.99): fine-tuning runs few steps on small CPU batches.
        self.bn = nn.BatchNorm2D(cout, momentum=0.9, epsilon=BN_EPSILON,
                                 weight_attr=ParamAttr(learning_rate=lr_mult),
                                 bias_attr=ParamAttr(learning_rate=lr_mult))
        self.act = nn.ReLU6() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class MBConv(nn.Layer):
    def __init__(self, cin: int, cout: int, stage: Stage, stride: int, drop: float, lr_mult: float):
        super().__init__()
        hidden = cin * stage.expand
        self.expand = ConvBN(cin, hidden, 1, lr_mult=lr_mult) if stage.expand != 1 else None
        self.depthwise = ConvBN(hidden, hidden, stage.kernel, stride, groups=hidden, lr_mult=lr_mult)
        self.project = ConvBN(hidden, cout, 1, act=False, lr_mult=lr_mult)
        self.residual = stride == 1 and cin == cout
        self.drop = drop

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        if not self.residual:
            return y
        if self.training and self.drop > 0:
            # Stochastic depth: drop the whole branch per sample, rescale the survivors.
            keep = 1.0 - self.drop
            mask = paddle.floor(keep + paddle.rand([y.shape[0], 1, 1, 1], dtype=y.dtype))
            y = y / keep * mask
        return x + y


class EfficientNetLite(nn.Layer):
    def __init__(self, scaling: Scaling, class_num: int = 1000,
                 lr_mult_list: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)):
        super().__init__()
        if len(lr_mult_list) != 5:
            raise ValueError(f"lr_mult_list needs 5 values (stem + 4 stage groups), got {len(lr_mult_list)}")
        self.class_num = class_num
        self.stem = ConvBN(3, STEM_CHANNELS, 3, 2, lr_mult=lr_mult_list[0])
        plan = []
        cin = STEM_CHANNELS
        for i, stage in enumerate(BASE_STAGES):
            cout = round_channels(stage.out, scaling.width)
            for r in range(stage_repeats(i, stage, scaling.depth)):
                plan.append((i, cin, cout, stage, stage.stride if r == 0 else 1))
                cin = cout
        blocks = []
        groups = []
        for n, (i, bin_, bout, stage, stride) in enumerate(plan):
            # Stages pair up into the four LR groups that ResNet_vd's four stages use:
            # (16, 24), (40, 80), (112, 192), (320 + head).
            group = 1 + min(i // 2, 3)
            groups.append(group)
            blocks.append(MBConv(bin_, bout, stage, stride, DROP_CONNECT * n / len(plan), lr_mult_list[group]))
        self.blocks = nn.Sequential(*blocks)
        # A leading run of zero LR multipliers freezes those groups outright: no gradient reaches
        # them (backward through the high-resolution early layers is most of a CPU step's cost)
        # and their BatchNorm keeps the ImageNet statistics.
        frozen_groups = next((g for g, m in enumerate(lr_mult_list) if m != 0), 5)
        self.frozen_blocks = sum(1 for g in groups if g < frozen_groups)
        if frozen_groups >= 5:
            raise ValueError("lr_mult_list freezes every group; nothing would train but the FC head")
        self.frozen = [self.stem] + list(blocks[:self.frozen_blocks]) if frozen_groups > 0 else []
        for layer in self.frozen:
            for p in layer.parameters():
                p.stop_gradient = True
        self.head = ConvBN(cin, HEAD_CHANNELS, 1, lr_mult=lr_mult_list[4])
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(scaling.dropout)
        self.feature_dim = HEAD_CHANNELS
        stdv = 1.0 / math.sqrt(HEAD_CHANNELS)
        self.fc = nn.Linear(HEAD_CHANNELS, class_num, weight_attr=ParamAttr(initializer=Uniform(-stdv, stdv)))

    def train(self):
        super().train()
        for layer in self.frozen:
            layer.eval()

    def forward_frozen(self, x):
        """The frozen prefix alone (stem + frozen blocks): what cached.py precomputes in ONNX Runtime."""
        x = self.stem(x)
        for i in range(self.frozen_blocks):
            x = self.blocks[i](x)
        return x

    def forward_trainable(self, x):
        """Logits from the frozen prefix's output."""
        for i in range(self.frozen_blocks, len(self.blocks)):
            x = self.blocks[i](x)
        return self.fc(self.dropout(self.flatten(self.avg_pool(self.head(x)))))

    def forward_features(self, x):
        if self.frozen:
            with paddle.no_grad():
                x = self.stem(x)
                for i in range(self.frozen_blocks):
                    x = self.blocks[i](x)
            x.stop_gradient = True
            for i in range(self.frozen_blocks, len(self.blocks)):
                x = self.blocks[i](x)
        else:
            x = self.blocks(self.stem(x))
        return self.flatten(self.avg_pool(self.head(x)))

    def forward(self, x):
        return self.fc(self.dropout(self.forward_features(x)))


def build(arch: str, class_num: int, lr_mult_list=(1.0, 1.0, 1.0, 1.0, 1.0)) -> EfficientNetLite:
    if arch not in NET_TABLE:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(NET_TABLE)}")
    return EfficientNetLite(NET_TABLE[arch], class_num=class_num, lr_mult_list=tuple(lr_mult_list))


def EfficientNetLite0(**kw): return build("EfficientNetLite0", **kw)
def EfficientNetLite1(**kw): return build("EfficientNetLite1", **kw)
def EfficientNetLite2(**kw): return build("EfficientNetLite2", **kw)
