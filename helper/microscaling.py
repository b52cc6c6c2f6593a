"""FP8, microscaling (OCP MX v1.0) and NVFP4: small floats that share a scale per block. Taught in 08.

An element format is a tiny float (sign, exponent, mantissa, a bias) or, for MXINT8, an integer with an
implicit 2^-6. MX stores blocks of 32 elements with one shared power-of-two scale in E8M0 (8 bits, an
exponent only): X = 2^(floor(log2(absmax)) - emax_elem) (spec section 6.3). NVFP4 stores E2M1 elements
in blocks of 16 with an E4M3 scale per block and one fp32 scale per tensor. Everything here is pure torch
and bit-exact against torch's float8 dtypes and torchao's MX / NVFP4 reference code (tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .validation import InputTypeError, check_choice, check_float_tensor, check_int_in_range, check_tensor

__all__ = ["ElementFormat", "ELEMENT_FORMATS", "MX_FORMATS", "round_to_element", "encode_element",
           "decode_element", "element_values", "mx_shared_exponent", "encode_e8m0", "decode_e8m0",
           "MXQuantized", "quantize_mx", "dequantize_mx", "fake_quantize_mx", "NVFP4Quantized",
           "quantize_nvfp4", "dequantize_nvfp4", "fake_quantize_nvfp4", "mx_bits_per_weight",
           "nvfp4_bits_per_weight", "fake_quantize_fp8", "FP8_GRANULARITIES", "W8A8FP8FakeLinear",
           "w8a8_fp8_model", "block_quantize_model"]


@dataclass(frozen=True)
class ElementFormat:
    """A small float: 1 sign, exponent_bits, mantissa_bits, a bias; or (integer=True) a two's-complement int."""

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_value: float
    has_inf: bool = False
    has_nan: bool = False
    integer: bool = False

    @property
    def bits(self) -> int:
        """Storage bits per element (sign included)."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def emax(self) -> int:
        """Exponent of the largest power of two the format holds (MX spec table 1: E4M3 8, E2M1 2, INT8 0)."""
        return math.floor(math.log2(self.max_value))

    @property
    def min_normal_exponent(self) -> int:
        """1 - bias: below 2^(1 - bias) the spacing stops shrinking (subnormals)."""
        return 1 - self.bias


# OCP MX v1.0 table 1 (and OFP8 for E4M3 / E5M2). E4M3 keeps S.1111.111 for NaN and has no Inf ("fn").
ELEMENT_FORMATS = {
    "e4m3": ElementFormat("e4m3", 4, 3, 7, 448.0, has_nan=True),
    "e5m2": ElementFormat("e5m2", 5, 2, 15, 57344.0, has_inf=True, has_nan=True),
    "e3m2": ElementFormat("e3m2", 3, 2, 3, 28.0),
    "e2m3": ElementFormat("e2m3", 2, 3, 1, 7.5),
    "e2m1": ElementFormat("e2m1", 2, 1, 1, 6.0),
    "int8": ElementFormat("int8", 0, 7, 0, 127 / 64, integer=True),  # k / 64, k in -127..127
}
MX_FORMATS = {"MXFP8": "e4m3", "MXFP8-E5M2": "e5m2", "MXFP6": "e2m3", "MXFP6-E3M2": "e3m2", "MXFP4": "e2m1",
              "MXINT8": "int8"}
FP8_GRANULARITIES = ("per_tensor", "per_channel", "per_token")
_TORCH_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def _format(element: str | ElementFormat) -> ElementFormat:
    if isinstance(element, ElementFormat):
        return element
    check_choice(element, "element", tuple(ELEMENT_FORMATS))
    return ELEMENT_FORMATS[element]


def round_to_element(x: torch.Tensor, element: str | ElementFormat = "e4m3") -> torch.Tensor:
    """x rounded to the nearest value of the format, ties to even; beyond max_value it saturates (float32).

    step = 2^(max(floor(log2|x|), 1 - bias) - mantissa_bits); q = round(x / step) * step, clamped to ±max.
    E4M3 has no Inf: ±Inf saturate to ±448, as torch's cast does; E5M2 keeps ±Inf and rounds past
    57344 + half a step to Inf (IEEE, as torch does). NaN stays NaN.
    """
    fmt = _format(element)
    check_tensor(x, "x")
    if not x.is_floating_point():
        raise InputTypeError(f"x must be a floating-point tensor, got {x.dtype}")
    x = x.detach().float()
    if fmt.integer:
        return torch.round(x * 64).clamp(-127, 127) / 64
    magnitude = x.abs()
    _, exponent = torch.frexp(magnitude)  # magnitude = m * 2^exponent, m in [0.5, 1)
    exponent = (exponent - 1).clamp(min=fmt.min_normal_exponent)
    step = torch.ldexp(torch.ones_like(magnitude), exponent - fmt.mantissa_bits)
    rounded = torch.round(magnitude / step) * step
    if fmt.has_inf:  # IEEE: what rounds beyond the largest finite value becomes Inf
        top_step = 2.0 ** (fmt.emax - fmt.mantissa_bits)
        rounded = torch.where(magnitude >= fmt.max_value + top_step / 2, torch.inf, rounded.clamp(max=fmt.max_value))
        rounded = torch.where(torch.isinf(magnitude), torch.inf, rounded)
    else:
        rounded = rounded.clamp(max=fmt.max_value)  # saturation; NaN passes clamp unchanged
    return torch.copysign(rounded, x)


def encode_element(x: torch.Tensor, element: str | ElementFormat = "e4m3") -> torch.Tensor:
    """The format's bit codes (uint8, low `bits` bits used) of round_to_element(x): sign | exponent | mantissa.

    NaN is S.1111.111 in E4M3, 0.11111.11 in E5M2 (torch's codes); formats without NaN refuse it.
    """
    fmt = _format(element)
    value = round_to_element(x, fmt)
    nan = torch.isnan(value)
    if nan.any() and not fmt.has_nan:
        raise ValueError(f"{fmt.name} has no NaN code: x holds NaN (MX marks such a block with a NaN scale)")
    sign = torch.signbit(value).to(torch.int32) << (fmt.bits - 1)
    magnitude = torch.where(nan, 0.0, value.abs())
    if fmt.integer:
        code = torch.round(value * 64).to(torch.int32) & 0xFF  # two's complement
        return code.to(torch.uint8)
    _, exponent = torch.frexp(magnitude)
    exponent = exponent - 1
    normal = (exponent >= fmt.min_normal_exponent) & (magnitude > 0)
    field = torch.where(normal, exponent + fmt.bias, 0)
    unit = torch.ldexp(torch.ones_like(magnitude), torch.where(normal, exponent, fmt.min_normal_exponent))
    mantissa = torch.where(normal, magnitude / unit - 1, magnitude / unit) * 2 ** fmt.mantissa_bits
    code = (field << fmt.mantissa_bits) | mantissa.round().to(torch.int32)
    if fmt.has_inf:
        code = torch.where(torch.isinf(magnitude), ((1 << fmt.exponent_bits) - 1) << fmt.mantissa_bits, code)
        code = torch.where(nan, (1 << (fmt.bits - 1)) - 1, code)
        sign = torch.where(nan, 0, sign)
    elif fmt.has_nan:
        code = torch.where(nan, (1 << (fmt.bits - 1)) - 1, code)
    return (sign | code).to(torch.uint8)


def decode_element(codes: torch.Tensor, element: str | ElementFormat = "e4m3") -> torch.Tensor:
    """float32 values of bit codes: (-1)^s 2^(e - bias) (1 + m / 2^M), or 2^(1 - bias) m / 2^M when e = 0."""
    fmt = _format(element)
    check_tensor(codes, "codes")
    if codes.dtype != torch.uint8:
        raise InputTypeError(f"codes must be uint8, got {codes.dtype}")
    if fmt.bits < 8 and codes.numel() and int(codes.max()) >= 1 << fmt.bits:
        raise ValueError(f"{fmt.name} codes are {fmt.bits} bits (0..{(1 << fmt.bits) - 1}), got {int(codes.max())}")
    code = codes.to(torch.int32)
    if fmt.integer:
        return torch.where(code >= 128, code - 256, code).float() / 64
    negative = (code >> (fmt.bits - 1)) & 1 == 1
    field = (code >> fmt.mantissa_bits) & ((1 << fmt.exponent_bits) - 1)
    mantissa = (code & ((1 << fmt.mantissa_bits) - 1)).float() / 2 ** fmt.mantissa_bits
    exponent = torch.where(field == 0, fmt.min_normal_exponent, field - fmt.bias)
    magnitude = torch.ldexp(torch.where(field == 0, mantissa, 1 + mantissa), exponent)
    top = field == (1 << fmt.exponent_bits) - 1
    if fmt.has_inf:
        magnitude = torch.where(top & (mantissa == 0), torch.inf, torch.where(top, torch.nan, magnitude))
    elif fmt.has_nan:
        magnitude = torch.where(top & (mantissa == 1 - 2.0 ** -fmt.mantissa_bits), torch.nan, magnitude)
    return torch.where(negative, -magnitude, magnitude)


def element_values(element: str | ElementFormat) -> torch.Tensor:
    """Every finite value of the format, sorted, without duplicates (E2M1: 15 values from -6 to 6)."""
    fmt = _format(element)
    values = decode_element(torch.arange(1 << fmt.bits, dtype=torch.int32).to(torch.uint8), fmt)
    return values[torch.isfinite(values)].unique()


def _blocks(x: torch.Tensor, block_size: int) -> torch.Tensor:
    check_tensor(x, "x")
    if not x.is_floating_point():
        raise InputTypeError(f"x must be a floating-point tensor, got {x.dtype}")
    block_size = check_int_in_range(block_size, "block_size", 1, 1 << 20)
    if x.dim() == 0 or x.shape[-1] % block_size:
        raise ValueError(f"block_size {block_size} does not divide the last dimension of shape {tuple(x.shape)}")
    return x.detach().float().reshape(*x.shape[:-1], x.shape[-1] // block_size, block_size)


def mx_shared_exponent(absmax: torch.Tensor, element: str | ElementFormat = "e2m1") -> torch.Tensor:
    """The E8M0 exponent of each block: floor(log2(absmax)) - emax_elem, clamped to [-127, 127] (int32).

    An all-zero block (absmax 0) gets -127, the smallest scale; a block holding NaN or Inf gets 128, which
    encodes as the NaN code 0xFF (spec 6.3 and 5.4; torchao's to_mx does the same).
    """
    fmt = _format(element)
    check_tensor(absmax, "absmax")
    _, exponent = torch.frexp(absmax.float())
    shared = torch.where(absmax > 0, exponent - 1 - fmt.emax, -127).clamp(-127, 128)
    return torch.where(torch.isfinite(absmax), shared, 128).to(torch.int32)


def encode_e8m0(exponent: torch.Tensor) -> torch.Tensor:
    """E8M0 code = exponent + 127 (uint8; 255 is NaN): an exponent with no sign and no mantissa bits."""
    check_tensor(exponent, "exponent")
    if exponent.is_floating_point() or ((exponent < -127) | (exponent > 128)).any():
        raise ValueError("exponent must be integers in -127..127 (128 for NaN)")
    return (exponent.to(torch.int32) + 127).to(torch.uint8)


def decode_e8m0(codes: torch.Tensor) -> torch.Tensor:
    """2^(code - 127) as float32 (2^-127 is a float32 subnormal), NaN for code 255."""
    check_tensor(codes, "codes")
    if codes.dtype != torch.uint8:
        raise InputTypeError(f"codes must be uint8, got {codes.dtype}")
    value = torch.ldexp(torch.ones(codes.shape), codes.to(torch.int32) - 127)
    return torch.where(codes == 255, torch.nan, value)


@dataclass(frozen=True)
class MXQuantized:
    """An MX tensor: element codes (uint8, x's shape), E8M0 scale codes (one per block), format, block size."""

    codes: torch.Tensor
    scale_codes: torch.Tensor
    element: str
    block_size: int


def quantize_mx(x: torch.Tensor, element: str = "e2m1", block_size: int = 32) -> MXQuantized:
    """OCP MX along the last dimension: X = 2^(floor(log2 absmax) - emax) per block, P_i = Q_elem(V_i / X).

    Worked example (MXFP4): a block with absmax 5 has floor(log2 5) = 2, emax(E2M1) = 2, so X = 1 and each
    value rounds to the E2M1 grid; 13 would give X = 2 and 13 / 2 = 6.5 saturates to 6 (decoded 12).
    Saturation, not overflow, for every element (E5M2 too: V / X can reach 2^16 > 57344; torchao clamps too).
    Elements of a NaN-scale block are stored as code 0 (the scale alone marks the block NaN).
    """
    fmt = _format(element)
    blocks = _blocks(x, block_size)  # (..., blocks, block_size)
    shared = mx_shared_exponent(blocks.abs().amax(dim=-1), fmt)  # (..., blocks)
    scale = torch.ldexp(torch.ones(shared.shape), shared.clamp(max=127)).unsqueeze(-1)
    nan_block = (shared == 128).unsqueeze(-1)
    scaled = torch.where(nan_block, 0.0, blocks / scale).clamp(-fmt.max_value, fmt.max_value)  # saturate (6.3)
    codes = encode_element(scaled, fmt).reshape(x.shape)
    return MXQuantized(codes, encode_e8m0(shared), fmt.name, block_size)


def dequantize_mx(q: MXQuantized) -> torch.Tensor:
    """V_i = X * P_i (float32, the original shape); every value of a NaN-scale block is NaN."""
    if not isinstance(q, MXQuantized):
        raise InputTypeError(f"q must be an MXQuantized, got {type(q).__name__}")
    values = decode_element(q.codes, q.element)
    blocks = values.reshape(*values.shape[:-1], -1, q.block_size)
    return (blocks * decode_e8m0(q.scale_codes).unsqueeze(-1)).reshape(values.shape)


def fake_quantize_mx(x: torch.Tensor, element: str = "e2m1", block_size: int = 32) -> torch.Tensor:
    """x through MX and back, in x's shape and dtype: what an MX matmul computes with."""
    return dequantize_mx(quantize_mx(x, element, block_size)).to(x.dtype)


@dataclass(frozen=True)
class NVFP4Quantized:
    """NVFP4: E2M1 codes (x's shape), E4M3 block-scale codes (one per 16), and the fp32 per-tensor scale."""

    codes: torch.Tensor
    scale_codes: torch.Tensor
    tensor_scale: torch.Tensor
    block_size: int = 16


def quantize_nvfp4(x: torch.Tensor, block_size: int = 16) -> NVFP4Quantized:
    """Two-level scaling: s_t = amax / (448 * 6); s_b = E4M3(absmax_b / 6 / s_t); P_i = E2M1(V_i / (s_b s_t)).

    The same float operations as torchao's nvfp4_quantize with a per-tensor scale (so bit-exact with it):
    block scales clamped to [2^-6, 448] before the E4M3 cast, elements scaled by (1 / s_t) / s_b.
    """
    blocks = _blocks(x, block_size)
    if not torch.isfinite(blocks).all():
        raise ValueError("x holds NaN or Inf: NVFP4 has no code for them")
    amax = blocks.abs().max()
    tensor_scale = amax / (448.0 * 6.0) if amax > 0 else torch.tensor(1.0)
    block_scale = blocks.abs().amax(dim=-1) / 6.0 / tensor_scale  # (..., blocks)
    block_scale_e4m3 = block_scale.clamp(torch.finfo(torch.float8_e4m3fn).tiny, 448.0).to(torch.float8_e4m3fn)
    reciprocal = (1.0 / tensor_scale) / block_scale_e4m3.float()
    scaled = (blocks * reciprocal.unsqueeze(-1)).clamp(-6.0, 6.0)
    codes = encode_element(scaled, "e2m1").reshape(x.shape)
    return NVFP4Quantized(codes, block_scale_e4m3.view(torch.uint8), tensor_scale.float(), block_size)


def dequantize_nvfp4(q: NVFP4Quantized) -> torch.Tensor:
    """V_i = P_i * s_b * s_t (float32, the original shape)."""
    if not isinstance(q, NVFP4Quantized):
        raise InputTypeError(f"q must be an NVFP4Quantized, got {type(q).__name__}")
    values = decode_element(q.codes, "e2m1")
    blocks = values.reshape(*values.shape[:-1], -1, q.block_size)
    block_scale = decode_element(q.scale_codes, "e4m3") * q.tensor_scale
    return (blocks * block_scale.unsqueeze(-1)).reshape(values.shape)


def fake_quantize_nvfp4(x: torch.Tensor, block_size: int = 16) -> torch.Tensor:
    """x through NVFP4 and back, in x's shape and dtype."""
    return dequantize_nvfp4(quantize_nvfp4(x, block_size)).to(x.dtype)


def mx_bits_per_weight(element: str = "e2m1", block_size: int = 32) -> float:
    """element bits + 8 / block_size (one E8M0 scale per block): MXFP4 4.25, MXFP6 6.25, MXFP8 8.25."""
    fmt = _format(element)
    block_size = check_int_in_range(block_size, "block_size", 1, 1 << 20)
    return fmt.bits + 8 / block_size


def nvfp4_bits_per_weight(numel: int | None = None, block_size: int = 16) -> float:
    """4 + 8 / block_size (an E4M3 scale per 16) = 4.5, plus 32 / numel for the tensor's fp32 scale if given."""
    block_size = check_int_in_range(block_size, "block_size", 1, 1 << 20)
    extra = 0.0 if numel is None else 32 / check_int_in_range(numel, "numel", 1)
    return 4 + 8 / block_size + extra


def fake_quantize_fp8(x: torch.Tensor, element: str = "e4m3", granularity: str = "per_tensor") -> torch.Tensor:
    """Scaled FP8: scale = absmax / max_value (per tensor, per output channel = row, or per token = row of
    a (tokens, features) activation), q = FP8(x / scale) * scale, through torch's own float8 cast."""
    check_float_tensor(x, "x")
    check_choice(element, "element", tuple(_TORCH_FP8))
    check_choice(granularity, "granularity", FP8_GRANULARITIES)
    rows = x.detach().float().reshape(-1, x.shape[-1]) if x.dim() else x.detach().float().reshape(1, 1)
    absmax = rows.abs().amax() if granularity == "per_tensor" else rows.abs().amax(dim=1, keepdim=True)
    scale = (absmax / ELEMENT_FORMATS[element].max_value).clamp(min=1e-12)
    quantized = (rows / scale).to(_TORCH_FP8[element]).float() * scale
    return quantized.reshape(x.shape).to(x.dtype)


class W8A8FP8FakeLinear(nn.Module):
    """Simulated W8A8-FP8: E4M3 weights scaled per output channel, E4M3 activations scaled per token."""

    def __init__(self, linear: nn.Linear, element: str = "e4m3") -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise InputTypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.in_features, self.out_features, self.element = linear.in_features, linear.out_features, element
        self.register_buffer("weight", fake_quantize_fp8(linear.weight.detach(), element, "per_channel"))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = FP8(x) FP8(W)^T + b in fp32 (the numerics of an FP8 GEMM, not its speed)."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0:
            raise InputTypeError("x must be a floating-point tensor of activations")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must end in {self.in_features} features, got shape {tuple(x.shape)}")
        return nn.functional.linear(fake_quantize_fp8(x, self.element, "per_token"), self.weight, self.bias)


def _targets(model: nn.Module, exclude: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude)]


@torch.no_grad()
def w8a8_fp8_model(model: nn.Module, element: str = "e4m3", exclude: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """Swap every linear layer (but lm_head) for W8A8FP8FakeLinear, in place."""
    check_choice(element, "element", tuple(_TORCH_FP8))
    for name, linear in _targets(model, exclude):
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, W8A8FP8FakeLinear(linear, element))
    return model


@torch.no_grad()
def block_quantize_model(model: nn.Module, fmt: str = "MXFP4", exclude: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """Replace every linear weight (but lm_head) by its MX or NVFP4 fake quantization (blocks along inputs)."""
    check_choice(fmt, "fmt", (*MX_FORMATS, "NVFP4"))
    for _, linear in _targets(model, exclude):
        weight = linear.weight
        new = fake_quantize_nvfp4(weight) if fmt == "NVFP4" else fake_quantize_mx(weight, MX_FORMATS[fmt])
        weight.copy_(new)
    return model
