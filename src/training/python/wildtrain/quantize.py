"""FP32 ONNX -> INT8 ONNX by static quantization (QDQ, per-channel weights), calibrated on
training images put through the same eval transform the service uses."""
from __future__ import annotations

import os
import random
import tempfile

import numpy as np

from . import data as D


class ImageCalibrationReader:
    def __init__(self, input_name: str, paths: list[str], size: int, short: int, mean, std):
        self.input_name, self.size, self.short, self.mean, self.std = input_name, size, short, mean, std
        self.paths = iter(paths)
        self.used = 0

    def get_next(self):
        for path in self.paths:
            try:
                im = D.center_crop(D.resize_short(D.load_rgb(path), self.short), self.size)
            except Exception:
                continue  # unreadable calibration images are skipped: calibration needs only a sample
            self.used += 1
            return {self.input_name: D.to_chw(im, self.mean, self.std)[None]}
        return None

    def rewind(self):  # required by some onnxruntime versions
        pass


def quantize_int8(onnx_in: str, onnx_out: str, paths: list[str], size: int, short: int, mean, std,
                  count: int = 200, seed: int = 0) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sample = list(paths)
    random.Random(seed).shuffle(sample)
    input_name = onnx.load(onnx_in).graph.input[0].name
    reader = ImageCalibrationReader(input_name, sample[:count], size, short, mean, std)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(onnx_in, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, onnx_out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    if reader.used == 0:
        raise ValueError("no calibration image could be read")
    return {"onnx": onnx_out, "calibration_images": reader.used, "method": "static QDQ, per-channel int8 weights, uint8 activations, MinMax"}
