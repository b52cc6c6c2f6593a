"""Fuzzing the public functions of helper with odd arguments: NaN, Inf, 10**400, "False", empty tensors, ...

For each function, hypothesis replaces one or two arguments of a working call by odd values. The call must
return a result without NaN, or raise a ValueError/TypeError from helper's own code (the innermost frame of
the traceback is in helper/: never a bare error from deep inside torch or numpy), within 5 seconds (a
SIGALRM timer turns a hang into a failure). Seeded (derandomized) and bounded: TRIES_PER_FUNCTION each.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import helper
from helper.gptq import HessianAccumulator
from helper.layers import W4A16Linear, W8A16Linear
from helper.linear_quant import QuantScheme

TRIES_PER_FUNCTION = 25  # x 37 functions = 925 tries
SECONDS_PER_CALL = 10
HELPER = str(Path(helper.__file__).resolve().parent)
NAN, INF = float("nan"), float("inf")

ODD = [0, -1, 1, 2, 3, 6, 7, 8, 1000, 10**9, 10**400, -10**400, 2.5, 0.0, -0.0, NAN, INF, -INF, 1e308, 1e-320,
       True, False, "False", "True", "8", "", None, [], [1, 2], [[1.0], [1.0, 2.0]], {}, np.int64(8), np.float32(0.5),
       np.array([1.0, 2.0]), "per_row", "mse", "float64"]
ODD_TENSORS = [torch.tensor(3), torch.tensor(0.5), torch.tensor([]), torch.tensor([NAN, 1.0]), torch.tensor([INF]),
               torch.tensor([1, 2]), torch.zeros(0, 4), torch.ones(2, 3, dtype=torch.long), torch.full((4, 8), 1e38),
               torch.zeros(4, 8), torch.randn(4, 8).double(), torch.randn(4, 8).half(), torch.randn(3, 5),
               torch.randn(2, 64), torch.ones(2, 64, dtype=torch.int32), torch.full((1, 8), 100),
               torch.zeros(1, 200, dtype=torch.long)]


def _tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()


@dataclass
class Case:
    """A working call: fn(**kwargs). Fuzzing replaces some of the kwargs by odd values."""

    name: str
    fn: Callable
    kwargs: dict


def _linear(in_features: int = 64, out_features: int = 8) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features)


def _forward(layer_factory: Callable) -> Callable:
    def call(x):
        return layer_factory()(x)
    return call


_MODEL = {}


def _model() -> nn.Module:
    if "llama" not in _MODEL:
        _MODEL["llama"] = _tiny_llama()
    return _MODEL["llama"]


def _allocate(budget_bits, sensitivity_value, bits_value):
    model = _model()
    units = helper.layer_units(model, "type")
    sensitivity = {unit: 1.0 for unit in units}
    sensitivity[next(iter(units))] = sensitivity_value
    allocation = helper.allocate_bits(model, units, sensitivity, budget_bits, group_size=16)
    allocation[next(iter(units))] = bits_value
    import copy

    return helper.apply_allocation(copy.deepcopy(model), units, allocation, group_size=16)


CASES = [
    Case("fit_group_size", helper.fit_group_size, dict(in_features=576, preferred=128, step=32)),
    Case("calibrate_range", helper.calibrate_range,
         dict(x=torch.randn(4, 8), scheme=QuantScheme(), method="mse", percentile=99.0, steps=10)),
    Case("lloyd_max_gaussian", helper.lloyd_max_gaussian, dict(n_levels=16, tolerance=1e-6, max_iterations=200)),
    Case("sqnr_full_scale_uniform_db", helper.sqnr_full_scale_uniform_db, dict(bits=8)),
    Case("uniform_noise_power", helper.uniform_noise_power, dict(scale=0.1)),
    Case("gaussian_mse", helper.gaussian_mse, dict(levels=torch.linspace(-1, 1, 16))),
    Case("best_step_gaussian_mse", helper.best_step_gaussian_mse,
         dict(codes=torch.arange(-8.0, 8.0), low=1e-3, high=2.0)),
    Case("QuantScheme", QuantScheme, dict(bits=4, symmetric=True, granularity="per_group", axis=0, group_size=8,
                                          signed=True, restricted=False, zero_point_domain="int")),
    Case("quantize_tensor", lambda x, bits, symmetric, clip: helper.quantize_tensor(
        x, QuantScheme(bits=bits, symmetric=symmetric, signed=symmetric), clip).dequantize(),
         dict(x=torch.randn(4, 8), bits=8, symmetric=True, clip=(-1.0, 1.0))),
    Case("integer_range", helper.integer_range, dict(bits=4, signed=True, restricted=False)),
    Case("pack", helper.pack, dict(values=torch.randint(0, 16, (4, 8)), bits=4)),
    Case("unpack", helper.unpack, dict(packed=torch.randint(0, 255, (4, 4), dtype=torch.uint8), bits=4, length=8)),
    Case("packed_length", helper.packed_length, dict(n_values=9, bits=4)),
    Case("nf4_expected_mse", helper.nf4_expected_mse, dict(codebook=helper.nf4_codebook(), block_size=64, grid=51)),
    Case("bin_counts", helper.bin_counts, dict(x_normalized=torch.rand(100) * 2 - 1, codebook=helper.nf4_codebook())),
    Case("quantize_blockwise", helper.quantize_blockwise,
         dict(x=torch.randn(4, 64), codebook=helper.nf4_codebook(), block_size=64)),
    Case("dequantize_blockwise", helper.dequantize_blockwise,
         dict(codes=torch.randint(0, 16, (128,), dtype=torch.uint8), absmax=torch.ones(2),
              codebook=helper.nf4_codebook(), shape=(2, 64))),
    Case("codebook_bits_per_parameter", helper.codebook_bits_per_parameter,
         dict(code_bits=4, block_size=64, double_quant=True, dq_block_size=256)),
    Case("code_entropy_bits", helper.code_entropy_bits, dict(counts=torch.tensor([5, 3, 0, 1]))),
    Case("smoothing_scales", helper.smoothing_scales,
         dict(act_absmax=torch.rand(8) + 0.1, weight_absmax=torch.rand(8) + 0.1, alpha=0.5)),
    Case("awq_scales", helper.awq_scales, dict(x_scale=torch.rand(8) + 0.1, alpha=0.5)),
    Case("activation_scale", helper.activation_scale, dict(x=torch.randn(4, 8))),
    Case("HessianAccumulator", lambda in_features, x: (lambda h: (h.add_batch(x), h.result())[1])(
        HessianAccumulator(in_features)), dict(in_features=8, x=torch.randn(4, 8))),
    Case("llm_int8_linear", helper.llm_int8_linear,
         dict(x=torch.randn(4, 8), weight=torch.randn(3, 8), bias=torch.zeros(3), threshold=6.0)),
    Case("fake_int8_rows", helper.fake_int8_rows, dict(x=torch.randn(4, 8), absmax=torch.tensor(2.0))),
    Case("W8A8FakeLinear", lambda activations, act_absmax, x: helper.W8A8FakeLinear(
        _linear(8, 3), activations, act_absmax)(x), dict(activations="per_tensor", act_absmax=2.0,
                                                        x=torch.randn(4, 8))),
    Case("W8A16Linear", lambda in_features, bias, x: W8A16Linear(in_features, 8, bias)(x),
         dict(in_features=64, bias=True, x=torch.randn(2, 64))),
    Case("W4A16Linear.from_linear", lambda group_size, symmetric, x: W4A16Linear.from_linear(
        _linear(), group_size, symmetric)(x), dict(group_size=32, symmetric=False, x=torch.randn(2, 64))),
    Case("quantize_q8_0", helper.quantize_q8_0, dict(x=np.random.default_rng(0).standard_normal((2, 64)))),
    Case("quantize_q4_0", helper.quantize_q4_0, dict(x=np.random.default_rng(0).standard_normal((2, 64)))),
    Case("dequantize_q4_1", helper.dequantize_q4_1, dict(data=np.zeros(40, dtype=np.uint8))),
    Case("k_quant_bits_per_weight", helper.k_quant_bits_per_weight, dict(type_name="Q4_K")),
    Case("model_memory_bytes", helper.model_memory_bytes, dict(n_params=1000, fmt="BF16")),
    Case("format_bytes", helper.format_bytes, dict(n_bytes=1.5e9)),
    Case("quantization_error", helper.quantization_error, dict(x=torch.randn(4, 8), x_hat=torch.randn(4, 8))),
    Case("perplexity", lambda windows, batch_size: helper.perplexity(_model(), windows, batch_size),
         dict(windows=torch.randint(0, 64, (2, 8)), batch_size=1)),
    Case("allocate_bits", _allocate, dict(budget_bits=6.0, sensitivity_value=2.0, bits_value=8)),
]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"took more than {SECONDS_PER_CALL} s")


def _innermost_file(error: BaseException) -> str:
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename


def _has_nan(result: object) -> bool:
    if isinstance(result, torch.Tensor):
        return bool(result.is_floating_point() and torch.isnan(result).any())
    if isinstance(result, np.ndarray):
        return bool(result.dtype.kind == "f" and np.isnan(result).any())
    if isinstance(result, float):
        return math.isnan(result)
    if isinstance(result, (tuple, list)):
        return any(_has_nan(item) for item in result)
    if isinstance(result, dict):
        return any(_has_nan(item) for item in result.values())
    return False


TALLY: dict[str, dict[str, int]] = {}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_odd_arguments_give_a_result_or_a_clear_error(case):
    tally = TALLY.setdefault(case.name, {"tries": 0, "result": 0, "error": 0})
    _model()  # built before any timer runs: an alarm inside an import would break the import system

    @settings(max_examples=TRIES_PER_FUNCTION, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        names = list(case.kwargs)
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=min(2, len(names)), unique=True))
        kwargs = dict(case.kwargs)
        for name in chosen:
            kwargs[name] = data.draw(st.sampled_from(ODD + ODD_TENSORS), label=name)
        tally["tries"] += 1
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_CALL)
        try:
            result = case.fn(**kwargs)
        except (ValueError, TypeError) as error:
            tally["error"] += 1
            where = _innermost_file(error)
            assert where.startswith(HELPER), (f"{case.name}({chosen}) raised {type(error).__name__} from {where}, "
                                              f"not from helper: {error}")
            assert str(error), f"{case.name}({chosen}) raised an empty {type(error).__name__}"
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        tally["result"] += 1
        assert not _has_nan(result), f"{case.name} with {chosen} = {[kwargs[n] for n in chosen]} returned NaN"

    fuzz()
    assert tally["tries"] >= TRIES_PER_FUNCTION // 2


def test_fuzzing_tried_every_function():
    if len(TALLY) < len(CASES):
        pytest.skip("run together with the fuzz cases")
    total = sum(t["tries"] for t in TALLY.values())
    print(f"inputs: {total} tries over {len(TALLY)} functions, "
          f"{sum(t['result'] for t in TALLY.values())} results, {sum(t['error'] for t in TALLY.values())} errors")
    assert total >= len(CASES) * TRIES_PER_FUNCTION // 2
