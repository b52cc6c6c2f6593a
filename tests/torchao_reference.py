"""Run torchao's MX / NVFP4 reference quantizers on saved inputs, in a process of its own.

torchao is kept out of the course's environment (transformers imports it whenever it is importable, and
its import logs warnings into every notebook that loads a model), so tests/test_microscaling.py runs this
script with PYTHONPATH pointing at the copy `make setup` installs in .cache/reference/torchao.
Usage: python tests/torchao_reference.py inputs.pt outputs.pt
"""

import sys

import torch
from torchao.prototype.custom_fp_utils import _f32_to_floatx_unpacked, _floatx_unpacked_to_f32
from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, f32_to_f4_unpacked
from torchao.prototype.mx_formats.mx_tensor import to_mx
from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

ELEMENTS = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2, "e2m1": torch.float4_e2m1fn_x2,
            "e2m3": "fp6_e2m3", "e3m2": "fp6_e3m2"}


def main(source: str, target: str) -> None:
    inputs = torch.load(source)
    out = {}
    for name, x in inputs["mx"].items():
        element = name.split("/")[0]
        scale, data = to_mx(x.contiguous(), ELEMENTS[element], 32)
        out[f"mx/{name}/scale"] = scale.view(torch.uint8)
        if element == "e2m1":  # packed two per byte, low nibble first
            data = torch.stack([data & 0xF, data >> 4], dim=-1).reshape(x.shape)
        out[f"mx/{name}/codes"] = data.view(torch.uint8)
    for name, x in inputs["nvfp4"].items():
        tensor_scale = per_tensor_amax_to_scale(x.abs().max())
        scales, data = nvfp4_quantize(x.contiguous(), 16, tensor_scale)
        out[f"nvfp4/{name}/scale"] = scales.view(torch.uint8).reshape(*x.shape[:-1], -1)
        out[f"nvfp4/{name}/codes"] = torch.stack([data & 0xF, data >> 4], dim=-1).reshape(x.shape)
        out[f"nvfp4/{name}/tensor_scale"] = tensor_scale
    for name, x in inputs["elements"].items():
        if name == "e2m1":
            out[f"elements/{name}/codes"] = f32_to_f4_unpacked(x)
            out[f"elements/{name}/values"] = f4_unpacked_to_f32(torch.arange(16, dtype=torch.uint8))
        else:
            ebits, mbits = int(name[1]), int(name[3])
            out[f"elements/{name}/codes"] = _f32_to_floatx_unpacked(x, ebits, mbits)
            out[f"elements/{name}/values"] = _floatx_unpacked_to_f32(torch.arange(64, dtype=torch.uint8), ebits, mbits)
    torch.save(out, target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
