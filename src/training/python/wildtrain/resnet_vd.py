"""ResNet_vd family with parameter names identical to PaddleClas legendary_models/resnet.py.

Exact names matter: a PaddleClas .pdparams (e.g. ResNet50_vd_ssld_pretrained) must load into these
layers with zero missing and zero unexpected keys. Every variant comes from one table; the public
factories are thin. Only the vd version is built: it is the one the service ships.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Uniform


@dataclass(frozen=True)
class Depth:
    block: str  # "basic" | "bottleneck"
    blocks_per_stage: tuple[int, int, int, int]
    stage_in_channels: tuple[int, int, int, int]


NET_TABLE: dict[str, Depth] = {
    "ResNet18_vd": Depth("basic", (2, 2, 2, 2), (64, 64, 128, 256)),
    "ResNet34_vd": Depth("basic", (3, 4, 6, 3), (64, 64, 128, 256)),
    "ResNet50_vd": Depth("bottleneck", (3, 4, 6, 3), (64, 256, 512, 1024)),
    "ResNet101_vd": Depth("bottleneck", (3, 4, 23, 3), (64, 256, 512, 1024)),
    "ResNet152_vd": Depth("bottleneck", (3, 8, 36, 3), (64, 256, 512, 1024)),
    "ResNet200_vd": Depth("bottleneck", (3, 12, 48, 3), (64, 256, 512, 1024)),
}
STAGE_WIDTHS = (64, 128, 256, 512)


class ConvBNLayer(nn.Layer):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 is_vd_mode: bool = False, act: bool = False, lr_mult: float = 1.0):
        super().__init__()
        self.is_vd_mode = is_vd_mode
        self.act = act
        # vd shortcut: average-pool before a stride-1 1x1 conv instead of a strided 1x1 conv that
        # would discard three quarters of the activations.
        self.avg_pool = nn.AvgPool2D(kernel_size=2, stride=stride, padding="SAME", ceil_mode=True)
        self.conv = nn.Conv2D(in_channels, out_channels, kernel, stride=1 if is_vd_mode else stride,
                              padding=(kernel - 1) // 2, weight_attr=ParamAttr(learning_rate=lr_mult),
                              bias_attr=False)
        # BatchNorm2D stores weight, bias, _mean, _variance: the same keys as PaddleClas's BatchNorm.
        self.bn = nn.BatchNorm2D(out_channels, momentum=0.9, epsilon=1e-5,
                                 weight_attr=ParamAttr(learning_rate=lr_mult),
                                 bias_attr=ParamAttr(learning_rate=lr_mult))
        self.relu = nn.ReLU()

    def forward(self, x):
        if self.is_vd_mode:
            x = self.avg_pool(x)
        x = self.bn(self.conv(x))
        return self.relu(x) if self.act else x


class BasicBlock(nn.Layer):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: bool, if_first: bool,
                 lr_mult: float):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, width, 3, stride, act=True, lr_mult=lr_mult)
        self.conv1 = ConvBNLayer(width, width, 3, act=False, lr_mult=lr_mult)
        if not shortcut:
            self.short = ConvBNLayer(in_channels, width, 1, stride, is_vd_mode=not if_first,
                                     lr_mult=lr_mult)
        self.shortcut = shortcut
        self.relu = nn.ReLU()

    def forward(self, x):
        short = x if self.shortcut else self.short(x)
        return self.relu(paddle.add(self.conv1(self.conv0(x)), short))


class BottleneckBlock(nn.Layer):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: bool, if_first: bool,
                 lr_mult: float):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, width, 1, act=True, lr_mult=lr_mult)
        # The stride sits in the 3x3 conv (ResNet "B" and later), not in the first 1x1.
        self.conv1 = ConvBNLayer(width, width, 3, stride, act=True, lr_mult=lr_mult)
        self.conv2 = ConvBNLayer(width, width * 4, 1, act=False, lr_mult=lr_mult)
        if not shortcut:
            self.short = ConvBNLayer(in_channels, width * 4, 1, stride, is_vd_mode=not if_first,
                                     lr_mult=lr_mult)
        self.shortcut = shortcut
        self.relu = nn.ReLU()

    def forward(self, x):
        short = x if self.shortcut else self.short(x)
        return self.relu(paddle.add(self.conv2(self.conv1(self.conv0(x))), short))


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNetVd(nn.Layer):
    def __init__(self, depth: Depth, class_num: int = 1000,
                 lr_mult_list: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)):
        super().__init__()
        if len(lr_mult_list) != 5:
            raise ValueError(f"lr_mult_list needs 5 values (stem + 4 stages), got {len(lr_mult_list)}")
        self.class_num = class_num
        stem_lr = lr_mult_list[0]
        self.stem = nn.Sequential(
            ConvBNLayer(3, 32, 3, 2, act=True, lr_mult=stem_lr),
            ConvBNLayer(32, 32, 3, 1, act=True, lr_mult=stem_lr),
            ConvBNLayer(32, 64, 3, 1, act=True, lr_mult=stem_lr),
        )
        self.max_pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        block_cls = BLOCKS[depth.block]
        blocks = []
        for stage, count in enumerate(depth.blocks_per_stage):
            width = STAGE_WIDTHS[stage]
            for i in range(count):
                blocks.append(block_cls(
                    in_channels=depth.stage_in_channels[stage] if i == 0 else width * block_cls.expansion,
                    width=width,
                    stride=2 if i == 0 and stage != 0 else 1,
                    shortcut=i != 0,
                    if_first=stage == 0 and i == 0,
                    lr_mult=lr_mult_list[stage + 1],
                ))
        self.blocks = nn.Sequential(*blocks)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten()
        features = depth.stage_in_channels[-1] * 2
        self.feature_dim = features
        stdv = 1.0 / math.sqrt(features)
        self.fc = nn.Linear(features, class_num, weight_attr=ParamAttr(initializer=Uniform(-stdv, stdv)))

    def forward_features(self, x):
        x = self.blocks(self.max_pool(self.stem(x)))
        return self.flatten(self.avg_pool(x))

    def forward(self, x):
        return self.fc(self.forward_features(x))


def build(arch: str, class_num: int, lr_mult_list=(1.0, 1.0, 1.0, 1.0, 1.0)) -> ResNetVd:
    if arch not in NET_TABLE:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(NET_TABLE)}")
    return ResNetVd(NET_TABLE[arch], class_num=class_num, lr_mult_list=tuple(lr_mult_list))


def ResNet18_vd(**kw): return build("ResNet18_vd", **kw)
def ResNet34_vd(**kw): return build("ResNet34_vd", **kw)
def ResNet50_vd(**kw): return build("ResNet50_vd", **kw)
def ResNet101_vd(**kw): return build("ResNet101_vd", **kw)
def ResNet152_vd(**kw): return build("ResNet152_vd", **kw)
def ResNet200_vd(**kw): return build("ResNet200_vd", **kw)
