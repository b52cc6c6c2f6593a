"""Auto-checked exercises: each checker computes the right answer with helper and says what is off."""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .dtypes import from_bits, stored_value, to_bits
from .evaluate import weight_differences
from .linear_quant import QuantScheme, choose_qparams_asymmetric, quantize_tensor
from .quant_noise import sqnr_full_scale_sine_db, sqnr_full_scale_uniform_db
from .layers import W4A16Linear, fit_group_size
from .models import DummyModel, build_model
from .packing import pack
from .sizes import model_memory_bytes

__all__ = ["Feedback", "EXERCISES", "evaluate", "check"]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: right or not, and a specific message."""

    correct: bool
    message: str

    def __str__(self) -> str:
        return ("Right! " if self.correct else "Not yet: ") + self.message


def _is_number(answer: Any) -> bool:
    return isinstance(answer, (int, float)) and not isinstance(answer, bool)


def _bf16_memory_7b(answer: Any) -> Feedback:
    expected = model_memory_bytes(7_000_000_000, "BF16")
    if not _is_number(answer):
        return Feedback(False, "give a number of bytes, e.g. 1_000_000_000.")
    if answer == expected:
        return Feedback(True, f"7e9 parameters x 2 bytes = {expected:,} bytes (14 GB).")
    if answer == expected / 1e9:
        return Feedback(False, "that is the size in GB; the question asks for bytes.")
    if answer == model_memory_bytes(7_000_000_000, "FP32"):
        return Feedback(False, "that is the FP32 size: bf16 has 16 bits = 2 bytes per parameter.")
    if answer == 7_000_000_000 * 16:
        return Feedback(False, "that counts bits; divide by 8 to get bytes.")
    return Feedback(False, f"{answer:,} is off by a factor of {answer / expected:.3g}. Bytes = parameters x bits / 8.")


def _fp16_bits_of_minus_2_5(answer: Any) -> Feedback:
    expected = to_bits(-2.5, torch.float16)
    if not isinstance(answer, str):
        return Feedback(False, "give the bits as a string of 16 characters, e.g. '0 01111 0000000000'.")
    clean = answer.replace(" ", "").replace("_", "")
    if len(clean) != 16 or set(clean) - {"0", "1"}:
        return Feedback(False, f"fp16 has 16 bits of 0/1; your string has {len(clean)} characters.")
    if clean == expected:
        return Feedback(True, f"sign 1, exponent {expected[1:6]} (16 - 15 = 1), mantissa {expected[6:]} "
                              "(1.25): -1.25 x 2^1 = -2.5.")
    got = from_bits(clean, torch.float16)
    if clean[0] != expected[0]:
        return Feedback(False, f"the sign bit is wrong (your bits are {got!r}). Negative numbers have sign bit 1.")
    if clean[1:6] != expected[1:6]:
        return Feedback(False, f"your bits are {got!r}: the exponent is off. -2.5 = -1.25 x 2^1, "
                               "and fp16's bias is 15.")
    return Feedback(False, f"your bits are {got!r}: sign and exponent are right, the mantissa is off "
                           "(1.25 = 1 + 1/4: which mantissa bit is worth 1/4?).")


def _bf16_stored_0_1(answer: Any) -> Feedback:
    expected = stored_value(0.1, torch.bfloat16)
    if not _is_number(answer):
        return Feedback(False, "give the stored value as a number (a float).")
    if answer == expected:
        return Feedback(True, f"bf16 keeps 8 significant bits: 0.1 becomes {expected!r} "
                              f"(error {expected - 0.1:+.2e}).")
    if answer == 0.1:
        return Feedback(False, "0.1 has no exact binary form in any float format; bf16 keeps its nearest value.")
    if answer == stored_value(0.1, torch.float16):
        return Feedback(False, "that is what fp16 stores (10 mantissa bits); bf16 has only 7.")
    if math.isclose(answer, expected, rel_tol=0.01):
        return Feedback(False, f"close ({answer!r}), but the answer is exact: use helper.stored_value or "
                               "work out the 7 mantissa bits.")
    return Feedback(False, f"{answer!r} is not within 1 % of 0.1; bf16 only rounds to its nearest value.")


def _int8_range(answer: Any) -> Feedback:
    info = torch.iinfo(torch.int8)
    if not (isinstance(answer, tuple) and len(answer) == 2 and all(_is_number(a) for a in answer)):
        return Feedback(False, "give a tuple (smallest, largest).")
    if tuple(answer) == (info.min, info.max):
        return Feedback(True, f"two's complement with 8 bits: {info.min}..{info.max} (one more negative value).")
    if tuple(answer) == (0, 255):
        return Feedback(False, "that is uint8; int8 spends one bit on the sign.")
    if tuple(answer) == (-127, 127):
        return Feedback(False, "two's complement has one more negative value than positive (10000000 is ...?).")
    return Feedback(False, f"{answer} is not the int8 range; try torch.iinfo(torch.int8).")


@functools.lru_cache(maxsize=1)
def _flan_t5_params() -> int:
    return sum(p.numel() for p in build_model("google/flan-t5-small").parameters())


def _t5_bf16_footprint(answer: Any) -> Feedback:
    params = _flan_t5_params()
    expected = model_memory_bytes(params, "BF16")  # T5 has no buffers: parameters are the whole footprint
    if not _is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{params:,} parameters x 2 bytes = {expected:,} bytes, exactly half of fp32.")
    if answer == model_memory_bytes(params, "FP32"):
        return Feedback(False, "that is the fp32 footprint; bf16 has 2 bytes per parameter.")
    if answer == params * 16:
        return Feedback(False, "that counts bits; divide by 8.")
    return Feedback(False, f"{answer:,} is off by {answer - expected:+,} bytes. Footprint = parameters x bytes "
                           "per parameter (+ buffers, which T5 does not have).")


def _dummy_layer_most_changed(answer: Any) -> Feedback:
    model = DummyModel()
    differences = weight_differences(model, copy.deepcopy(model).to(torch.bfloat16))
    layers: dict[str, float] = {}
    for name, difference in differences.items():
        layer = name.rsplit(".", 1)[0]
        layers[layer] = max(layers.get(layer, 0.0), difference)
    expected = max(layers, key=layers.get)
    if not isinstance(answer, str):
        return Feedback(False, f"give a layer name as a string, one of {sorted(layers)}.")
    if answer == expected:
        return Feedback(True, f"{expected} changes most (max |difference| {layers[expected]:.2e}); bf16 rounds "
                              "each value to 8 significant bits, so every weight moves by up to 0.4 % of itself.")
    if answer not in layers:
        return Feedback(False, f"{answer!r} is not a DummyModel layer; layers: {sorted(layers)}.")
    if layers[answer] == 0.0:
        return Feedback(False, f"{answer} does not change at all: LayerNorm starts at weight 1 and bias 0, "
                               "which bf16 stores exactly.")
    return Feedback(False, f"{answer} changes by at most {layers[answer]:.2e}; another layer changes more. "
                           "Try helper.weight_differences.")


@functools.lru_cache(maxsize=1)
def _blip_unhalved_bytes() -> int:
    model = build_model("Salesforce/blip-image-captioning-base")
    fp32 = model.get_memory_footprint()
    bf16 = model.to(torch.bfloat16).get_memory_footprint()
    return 2 * bf16 - fp32


def _blip_unhalved(answer: Any) -> Feedback:
    expected = _blip_unhalved_bytes()
    if not _is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{expected:,} bytes: the int64 position_ids buffer (512 x 8 bytes). Casting a "
                              "model to bf16 converts floating-point tensors only; integer buffers keep their dtype.")
    if answer == expected // 2:
        return Feedback(False, "close: that is bf16 - fp32 / 2, the residual the original course shows. The buffer is "
                               "in both footprints at full size, so that residual is half of it.")
    return Feedback(False, f"{answer:,} is not it. Compute 2 x (bf16 footprint) - (fp32 footprint), and look for "
                           "a buffer whose dtype is not floating point.")


def _scale_zero_point(answer: Any) -> Feedback:
    scale, zero_point = choose_qparams_asymmetric(torch.tensor(-1.0), torch.tensor(3.0), bits=8, signed=False)
    scale, zero_point = scale.item(), int(zero_point.item())
    if not (isinstance(answer, tuple) and len(answer) == 2 and all(_is_number(a) for a in answer)):
        return Feedback(False, "give a tuple (scale, zero_point).")
    got_scale, got_zero_point = answer
    scale_ok = math.isclose(got_scale, scale, rel_tol=1e-5)
    if scale_ok and got_zero_point == zero_point:
        return Feedback(True, f"scale = 4 / 255 = {scale:.6f}, zero_point = round(0 - (-1) / scale) = "
                              f"round(63.75) = {zero_point}.")
    if not scale_ok:
        if math.isclose(got_scale, 4 / 256, rel_tol=1e-5):
            return Feedback(False, "scale divides the range by the number of *steps*, 255, not the 256 levels.")
        if math.isclose(got_scale, 3 / 255, rel_tol=1e-5):
            return Feedback(False, "the range is max - min = 3 - (-1) = 4, not 3.")
        return Feedback(False, f"scale {got_scale!r} is off: scale = (rmax - rmin) / (qmax - qmin).")
    if not float(got_zero_point).is_integer():
        return Feedback(False, f"the zero-point must be an integer (you gave {got_zero_point}): round it.")
    if got_zero_point == 63:
        return Feedback(False, "63.75 rounds to 64, not 63 (round to nearest, not down).")
    return Feedback(False, f"scale is right; zero_point {got_zero_point} is not: zero_point = qmin - round(rmin / scale).")


def _per_channel_quantize(answer: Any) -> Feedback:
    if not callable(answer):
        return Feedback(False, "pass your function itself (my_quantize), not its result.")
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(16, 64, generator=generator) * torch.linspace(0.1, 4.0, 16).unsqueeze(1)
    reference = quantize_tensor(weight, QuantScheme(bits=4, granularity="per_channel", axis=0))
    try:
        result = answer(weight, 4)
    except Exception as error:  # a learner's function may fail in any way; say how
        return Feedback(False, f"your function raised {type(error).__name__}: {error}")
    if result is None:
        return Feedback(False, "your function returned None: end it with `return codes, scale`.")
    if not (isinstance(result, tuple) and len(result) == 2):
        return Feedback(False, "return a tuple (codes, scale).")
    codes, scale = result
    codes, scale = torch.as_tensor(codes), torch.as_tensor(scale, dtype=torch.float32)
    if scale.numel() == 1:
        return Feedback(False, "you returned one scale: per-channel means one scale per output row (16 here).")
    if scale.numel() != 16:
        return Feedback(False, f"expected 16 scales (one per row), got {scale.numel()}: reduce over dim=1.")
    if not torch.allclose(scale.reshape(16, 1), reference.scale, rtol=1e-5):
        return Feedback(False, "the scales differ: scale = max|row| / 7 for symmetric int4.")
    if codes.shape != weight.shape:
        return Feedback(False, f"codes should have the weight's shape {tuple(weight.shape)}, got {tuple(codes.shape)}.")
    if codes.min() < -8 or codes.max() > 7:
        return Feedback(False, "some codes are outside -8..7: clamp after rounding.")
    if not torch.equal(codes.to(torch.int32), reference.codes().to(torch.int32)):
        wrong = (codes.to(torch.int32) != reference.codes().to(torch.int32)).sum().item()
        return Feedback(False, f"{wrong} codes differ: use torch.round(w / scale) (ties to even), then clamp.")
    return Feedback(True, "same codes and scales as helper.quantize_tensor with a per_channel scheme.")


def _sqnr_8bit(answer: Any) -> Feedback:
    expected = sqnr_full_scale_sine_db(8)
    if not _is_number(answer):
        return Feedback(False, "give the SQNR in dB as a number.")
    if abs(answer - expected) < 0.05:
        return Feedback(True, f"6.02 x 8 + 1.76 = {expected:.2f} dB: each extra bit buys 6.02 dB.")
    if abs(answer - sqnr_full_scale_uniform_db(8)) < 0.05:
        return Feedback(False, "that is a full-scale *uniform* signal; a sine has 1.5 x its power relative to the "
                               "noise (+1.76 dB).")
    if abs(answer - 8 * 6.02) > 20:
        return Feedback(False, f"{answer} dB is far off: SQNR grows by about 6 dB per bit.")
    return Feedback(False, f"{answer} dB is not it: use 6.02 b + 1.76.")


def _pack_2bit(answer: Any) -> Feedback:
    if not callable(answer):
        return Feedback(False, "pass your function itself (my_pack_2bit), not its result.")
    generator = torch.Generator().manual_seed(4)
    values = torch.randint(0, 4, (3, 16), generator=generator, dtype=torch.uint8)
    try:
        packed = answer(values)
    except Exception as error:  # a learner's function may fail in any way; say how
        return Feedback(False, f"your function raised {type(error).__name__}: {error}")
    if packed is None:
        return Feedback(False, "your function returned None: return the packed uint8 tensor.")
    packed = torch.as_tensor(packed)
    expected = pack(values, 2)
    if packed.shape != expected.shape:
        return Feedback(False, f"expected shape {tuple(expected.shape)} (4 values per byte), got {tuple(packed.shape)}.")
    if packed.dtype != torch.uint8:
        return Feedback(False, f"return uint8 bytes, not {packed.dtype}.")
    if torch.equal(packed, expected):
        return Feedback(True, "same bytes as helper.pack(values, 2): value i of a byte sits at bits 2i..2i+1.")
    reversed_order = pack(values.flip(-1), 2).flip(-1)
    if torch.equal(packed, reversed_order):
        return Feedback(False, "the right values, in reverse order: the first value goes in the lowest 2 bits.")
    return Feedback(False, "the bytes differ: byte = v0 | v1 << 2 | v2 << 4 | v3 << 6 for each group of 4 values.")


def _w4a16_bytes(answer: Any) -> Feedback:
    layer = W4A16Linear(576, 1536, bias=False, group_size=32)
    expected = sum(t.numel() * t.element_size() for t in layer.buffers())
    codes = 576 * 1536 // 2
    if not _is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{codes:,} B of packed codes + {expected - codes:,} B of fp32 scales "
                              f"(1536 rows x 18 groups x 4 B) = {expected:,} B: 5 bits per weight.")
    if answer == codes:
        return Feedback(False, "that is the packed codes only: add one fp32 scale per group of 32 weights.")
    if answer == 576 * 1536 + (expected - codes):
        return Feedback(False, "codes are packed two per byte: 4 bits, not 8, per weight.")
    if answer == 576 * 1536 * 4:
        return Feedback(False, "that is the fp32 layer; the quantized one stores 4-bit codes + scales.")
    return Feedback(False, f"{answer:,} is not it: (weights x 4 bits) / 8 + (weights / 32) x 4 bytes.")


def _bits_per_weight(answer: Any) -> Feedback:
    expected = 4 + 16 / 32
    if not _is_number(answer):
        return Feedback(False, "give bits per weight as a number.")
    if math.isclose(answer, expected):
        return Feedback(True, "4 bits of code + a 16-bit scale shared by 32 weights (0.5 bit each) = 4.5.")
    if math.isclose(answer, 4):
        return Feedback(False, "the scales cost something too: 16 bits per group of 32 weights.")
    if math.isclose(answer, 5):
        return Feedback(False, "that is with fp32 scales; the question says 16-bit scales.")
    return Feedback(False, f"{answer} is not it: 4 + 16 / 32.")


def _as_tensor(answer: Any) -> torch.Tensor | None:
    try:
        return torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


HESSIAN_X = [[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]]  # 3 calibration tokens, 2 input features (lesson 06)


def _hessian(answer: Any) -> Feedback:
    x = torch.tensor(HESSIAN_X, dtype=torch.float64)
    expected = 2 * x.T @ x / x.shape[0]
    got = _as_tensor(answer)
    if got is None:
        return Feedback(False, "give a 2 x 2 tensor (or nested list) of numbers.")
    if got.shape == (3, 3):
        return Feedback(False, "that is 3 x 3: H is features x features, X^T X (inputs are the rows of X).")
    if got.shape != (2, 2):
        return Feedback(False, f"H must be 2 x 2 (one row and column per input feature), got {tuple(got.shape)}.")
    if torch.allclose(got, expected, atol=1e-3):
        return Feedback(True, f"H = 2 X^T X / n = {[[round(v, 3) for v in row] for row in expected.tolist()]}.")
    if torch.allclose(got, expected / 2, atol=1e-3):
        return Feedback(False, "missing the factor 2 (the derivative of a square): H = 2 X^T X / n.")
    if torch.allclose(got, expected * 3, atol=1e-3):
        return Feedback(False, "that is the sum over tokens; GPTQ averages: divide by n = 3.")
    return Feedback(False, "not yet: H = 2 X^T X / n with X the (3, 2) matrix of calibration inputs.")


def _smoothquant_scales(answer: Any) -> Feedback:
    act, weight = torch.tensor([16.0, 1.0, 4.0], dtype=torch.float64), torch.tensor([0.25, 1.0, 4.0], dtype=torch.float64)
    expected = act.sqrt() / weight.sqrt()
    got = _as_tensor(answer)
    if got is None or got.shape != (3,):
        return Feedback(False, "give three numbers, one scale per input channel.")
    if torch.allclose(got, expected, atol=1e-3):
        return Feedback(True, f"s = sqrt(max|X|) / sqrt(max|W|) = {expected.tolist()}: channel 0's activations "
                              "shrink 8x, its weights grow 8x, and both now peak at 2.")
    if torch.allclose(got, 1 / expected, atol=1e-3):
        return Feedback(False, "upside down: s_j = max|X_j|^alpha / max|W_j|^(1 - alpha).")
    return Feedback(False, "not yet: with alpha = 0.5, s_j = sqrt(max|X_j|) / sqrt(max|W_j|).")


def _smollm2_mixed_bits() -> tuple[float, float]:
    """SmolLM2 block: q,o 576x576; k,v 192x576; gate, up 1536x576; down 576x1536 (out x in)."""
    shapes = {"q": (576, 576), "k": (192, 576), "v": (192, 576), "o": (576, 576),
              "gate": (1536, 576), "up": (1536, 576), "down": (576, 1536)}
    total = sum(o * i for o, i in shapes.values())
    with_scales = sum(o * i * (8 + 32 / i if n == "down" else 4 + 32 / fit_group_size(i, 128))
                      for n, (o, i) in shapes.items()) / total
    without_scales = sum(o * i * (8 if n == "down" else 4) for n, (o, i) in shapes.items()) / total
    return with_scales, without_scales


def _mixed_bits(answer: Any) -> Feedback:
    expected, codes_only = _smollm2_mixed_bits()
    if not _is_number(answer):
        return Feedback(False, "give bits per weight as a number.")
    if math.isclose(answer, expected, abs_tol=0.01):
        return Feedback(True, f"{expected:.3f} bits/weight: down_proj is a quarter of the weights, so int8 there "
                              "costs a whole extra bit per weight on average.")
    if math.isclose(answer, codes_only, abs_tol=0.01):
        return Feedback(False, "right for the codes alone; add the fp32 scales (32 bits per group of 96, or per "
                              "row of 1536 for int8).")
    return Feedback(False, f"{answer} is not it: weight each layer's bits by its share of the block's weights.")


def _q4_1_weight(answer: Any) -> Feedback:
    d, m, q = 2.0**-6, -0.1875, 11  # fp16-exact: what a Q4_1 block stores
    expected = q * d + m
    if not _is_number(answer):
        return Feedback(False, "give the decoded weight as a number.")
    if math.isclose(answer, expected, abs_tol=1e-6):
        return Feedback(True, f"x = q * d + m = 11 x 0.015625 - 0.1875 = {expected}.")
    if math.isclose(answer, q * d, abs_tol=1e-6):
        return Feedback(False, "add the block's minimum m: Q4_1 stores a scale AND a minimum.")
    if math.isclose(answer, (q - 8) * d, abs_tol=1e-6):
        return Feedback(False, "that is the Q4_0 rule (q - 8) * d; Q4_1 uses q * d + m.")
    return Feedback(False, f"{answer} is not it: x = q * d + m.")


def _nf4_double_quant_bits(answer: Any) -> Feedback:
    expected = 4 + 8 / 64 + 32 / (64 * 256)
    if not _is_number(answer):
        return Feedback(False, "give bits per parameter as a number.")
    if math.isclose(answer, expected, abs_tol=5e-4):
        return Feedback(True, f"4 + 8/64 + 32/(64 x 256) = {expected:.4f} bits: double quantization saves "
                              f"{4.5 - expected:.3f} bits per parameter, about 3 GB on a 65 B model.")
    if math.isclose(answer, 4.5):
        return Feedback(False, "that is without double quantization (one fp32 absmax per 64 weights).")
    if math.isclose(answer, 4.125):
        return Feedback(False, "almost: the 8-bit absmax codes need their own fp32 scale, one per 256 of them.")
    return Feedback(False, f"{answer} is not it: 4 bits + an 8-bit absmax per 64 + an fp32 per 64 x 256.")


def _e2m1_value(answer: Any) -> Feedback:
    if not _is_number(answer):
        return Feedback(False, "give the value as a number.")
    if answer == 6.0:
        return Feedback(True, "s = 0, exponent 11 = 3, mantissa 1: (1 + 1/2) x 2^(3 - 1) = 6, FP4's largest value.")
    if answer == 12.0:
        return Feedback(False, "remember the exponent bias of 1: 2^(3 - 1), not 2^3.")
    if answer == 4.0:
        return Feedback(False, "the mantissa bit adds 1/2: (1 + 1/2), not 1.")
    return Feedback(False, f"{answer} is not it: (1 + m/2) x 2^(e - 1) for the bits s=0, e=11, m=1.")


EXERCISES: dict[str, Callable[[Any], Feedback]] = {
    "01.bf16_memory_7b": _bf16_memory_7b,
    "01.fp16_bits_of_minus_2_5": _fp16_bits_of_minus_2_5,
    "01.bf16_stored_0_1": _bf16_stored_0_1,
    "01.int8_range": _int8_range,
    "02.t5_bf16_footprint": _t5_bf16_footprint,
    "02.dummy_layer_most_changed": _dummy_layer_most_changed,
    "02.blip_bytes_not_halved": _blip_unhalved,
    "03.scale_zero_point": _scale_zero_point,
    "03.per_channel_quantize": _per_channel_quantize,
    "03.sqnr_8bit_sine": _sqnr_8bit,
    "04.pack_2bit": _pack_2bit,
    "04.w4a16_layer_bytes": _w4a16_bytes,
    "04.bits_per_weight_g32": _bits_per_weight,
    "05.q4_1_weight": _q4_1_weight,
    "05.nf4_double_quant_bits": _nf4_double_quant_bits,
    "05.e2m1_value": _e2m1_value,
    "06.hessian": _hessian,
    "06.smoothquant_scales": _smoothquant_scales,
    "06.mixed_bits_down_int8": _mixed_bits,
}


def evaluate(exercise: str, answer: Any) -> Feedback:
    """The checker's verdict on answer for the named exercise (pure: prints nothing)."""
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    if answer is ... or answer is None:
        return Feedback(False, "replace ... with your answer, then run the cell again.")
    return EXERCISES[exercise](answer)


def check(exercise: str, answer: Any) -> None:
    """Print instant feedback on answer for the named exercise."""
    print(evaluate(exercise, answer))
