"""The one place that turns an architecture name into a Paddle model: each family module has its
own table, and this module picks the family by looking the name up (never by evaluating it)."""
from __future__ import annotations

from . import efficientnet_lite, resnet_vd

FAMILIES = (resnet_vd, efficientnet_lite)


def family_of(arch: str):
    for family in FAMILIES:
        if arch in family.NET_TABLE:
            return family
    known = [name for family in FAMILIES for name in family.NET_TABLE]
    raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(known)}")


def build(arch: str, class_num: int, lr_mult_list=(1.0, 1.0, 1.0, 1.0, 1.0)):
    return family_of(arch).build(arch, class_num=class_num, lr_mult_list=lr_mult_list)
