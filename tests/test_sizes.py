import pytest
import torch

import helper


@pytest.mark.parametrize("fmt, bits", [("FP32", 32), ("fp16", 16), ("BF16", 16), ("FP8", 8), ("INT8", 8),
                                       ("INT4", 4), (torch.bfloat16, 16), ("float8_e5m2", 8)])
def test_bits_per_parameter(fmt, bits):
    assert helper.bits_per_parameter(fmt) == bits


def test_model_memory_classic_numbers():
    assert helper.model_memory_bytes(7_000_000_000, "BF16") == 14_000_000_000
    assert helper.model_memory_bytes(70_000_000_000, "FP32") == 280_000_000_000
    assert helper.model_memory_bytes(1_000_000_000, "INT4") == 500_000_000
    # the real SmolLM2 parameter count at fp32 is its get_memory_footprint() (lesson 02 checks it live)
    assert helper.model_memory_bytes(134_515_008, "FP32") == 538_060_032


def test_format_bytes_and_table():
    assert helper.format_bytes(1.5e9) == "1.50 GB"
    assert helper.format_bytes(512) == "512 B"
    table = helper.memory_table_text({"7B": 7_000_000_000})
    assert "14.00 GB" in table and "3.50 GB" in table


@pytest.mark.parametrize("call, message", [
    (lambda: helper.bits_per_parameter("int3"), "unknown format"),
    (lambda: helper.model_memory_bytes(-1, "FP32"), "n_params must be >= 0"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("make", [
    lambda: helper.DummyModel(),
    lambda: helper.DummyModel().to(torch.bfloat16),
    lambda: helper.build_model("google/flan-t5-small"),
], ids=["dummy-fp32", "dummy-bf16", "flan-t5-small"])
def test_compute_module_sizes_agrees_with_get_memory_footprint(make):
    from transformers.modeling_utils import PreTrainedModel

    model = make()
    sizes = helper.compute_module_sizes(model)
    expected = model.get_memory_footprint() if isinstance(model, PreTrainedModel) else \
        sum(p.numel() * p.element_size() for p in model.parameters())
    assert sizes[""] == expected


def test_compute_module_sizes_per_prefix():
    sizes = helper.compute_module_sizes(helper.DummyModel())
    assert sizes["linear_1"] == sizes["linear_1.weight"] + sizes["linear_1.bias"] == (4 + 2) * 4
    assert sizes[""] == sum(v for k, v in sizes.items() if k.count(".") == 0 and k)
    text = helper.module_sizes_text(helper.DummyModel())
    assert text.splitlines()[-1].split() == ["(total)", "120", "100.0", "%"]  # 30 parameters x 4 B


def test_compute_module_sizes_counts_tied_weights_once(smollm2):
    model, _ = smollm2
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert helper.compute_module_sizes(model)[""] == model.get_memory_footprint() == 538_060_288


def test_compute_module_sizes_sees_quanto_int8_data_and_scales():
    from optimum.quanto import freeze, qint8, quantize

    layer = torch.nn.Sequential(torch.nn.Linear(64, 32))
    quantize(layer, weights=qint8)
    freeze(layer)
    sizes = helper.compute_module_sizes(layer)
    # int8 weight (32 x 64 x 1 B) + one fp32 scale per output row + fp32 bias + quanto's two scalar buffers
    assert sizes["0.weight"] == 32 * 64 + 32 * 4
    assert sizes[""] == 32 * 64 + 32 * 4 + 32 * 4 + 2 * 4
    assert helper.tensor_bytes(torch.zeros(3, dtype=torch.float16)) == 6


def test_footprints_by_dtype_leaves_the_model_alone():
    model = helper.DummyModel()
    assert helper.footprints_by_dtype(model) == {"float32": 120, "float16": 60, "bfloat16": 60}
    assert model.linear_1.weight.dtype == torch.float32


def test_flan_t5_after_quanto_int8_matches_the_classic_course_to_the_byte():
    from optimum.quanto import freeze, qint8, quantize

    model = helper.build_model("google/flan-t5-small")
    quantize(model, weights=qint8)
    freeze(model)
    sizes = helper.compute_module_sizes(model)
    assert sizes[""] == 126_828_680  # the original course: 0.12682868 GB
    assert model.get_memory_footprint() > 300_000_000  # transformers does not see quanto's savings
    breakdown = helper.size_breakdown(model)
    assert sum(breakdown.values()) == sizes[""]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert breakdown["quantized weight codes"] == sum(m.in_features * m.out_features for m in linears)
    assert breakdown["weight scales (and minimums)"] == sum(m.out_features * 4 for m in linears)
    assert breakdown["activation scales (quanto buffers)"] == len(linears) * 8


def test_size_breakdown_of_course_layers():
    from helper.layers import W4A16Linear

    layer = W4A16Linear.from_linear(torch.nn.Linear(64, 8, bias=False), group_size=32, symmetric=False)
    assert helper.size_breakdown(layer) == {"quantized weight codes": 64 * 8 // 2,
                                            "weight scales (and minimums)": 2 * 8 * 2 * 4}


@pytest.mark.parametrize("call, message", [
    (lambda: helper.format_bytes(float("nan")), "n_bytes must be a finite number"),
    (lambda: helper.format_bytes(float("inf")), "n_bytes must be a finite number"),
    (lambda: helper.format_bytes(10**400), "n_bytes must be a float-sized number"),
    (lambda: helper.format_bytes("1 GB"), "n_bytes must be a number"),
    (lambda: helper.model_memory_bytes(1.5, "FP32"), "n_params must be an integer"),
    (lambda: helper.model_memory_bytes("7B", "FP32"), "n_params must be an integer"),
], ids=["nan", "inf", "huge", "string", "float-params", "string-params"])
def test_odd_sizes_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
