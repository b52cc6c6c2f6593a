import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import helper.methods
from helper.methods import (Method, apply_method, choose_int8_layers, evaluate_methods, grid_bits_per_weight,
                            method_bits_per_weight, method_table_text)


def _tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _windows(n, seed):
    return torch.randint(0, 128, (n, 32), generator=torch.Generator().manual_seed(seed))


def test_grid_bits_per_weight_counts_codes_fp16_scales_and_packed_zero_points():
    model = _tiny_llama()
    real = {"zero_point_domain": "int", "scale_bits": 16}  # the checkpoint format
    assert grid_bits_per_weight(model, 4, 32, **real) == 4 + 16 / 32
    assert grid_bits_per_weight(model, 4, 32, symmetric=False, **real) == 4 + (16 + 4) / 32
    assert grid_bits_per_weight(model, 3, 32, False) == 3 + 64 / 32  # the default: fp32 scale and fp32 minimum
    assert 8 < grid_bits_per_weight(model, 8, None) < 8.5  # per-row int8: 8 + 32 / in_features
    down = ("model.layers.0.mlp.down_proj",)
    shares = {True: 128 * 64, False: 0}
    total = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm" not in n)
    expected = 4.5 + shares[True] / total * (8 + 16 / 128 - 4.5)
    assert grid_bits_per_weight(model, 4, 32, int8_layers=down, **real) == pytest.approx(expected)


@pytest.mark.parametrize("method", [
    Method("rtn8", "rtn", 8, None), Method("rtn4", "rtn", 4, 32, symmetric=False, zero_point_domain="int"),
    Method("gptq4", "gptq", 4, 32, symmetric=False, act_order=True, int8_layers=("model.layers.1.mlp.down_proj",),
           scale_bits=16, zero_point_domain="int"),
    Method("awq+gptq", "awq+gptq", 4, 32, symmetric=False, act_order=True, awq_search="block", awq_clip=True),
], ids=["rtn8", "rtn4", "gptq4-int8-down", "awq+gptq"])
def test_methods_leave_the_original_and_put_every_weight_on_its_grid(method):
    model = _tiny_llama()
    quantized, bits = apply_method(model, method, _windows(2, 0), fast=True)
    assert bits == method_bits_per_weight(model, method)
    assert not torch.equal(quantized.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
    assert isinstance(model.model.layers[0].mlp.down_proj, torch.nn.Linear)
    for name, module in quantized.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            levels = 2 ** (8 if name in method.int8_layers or method.bits == 8 else method.bits)
            group = (module.in_features if name in method.int8_layers or method.group_size is None
                     else method.group_size)
            groups = module.weight.detach().reshape(-1, group)
            distinct = 1 + (groups.sort(dim=1).values.diff(dim=1) != 0).sum(dim=1)
            assert distinct.max() <= levels, name


def test_mixed_precision_stays_within_its_budget_and_reports_its_int8_layers():
    model = _tiny_llama()
    method = Method("mixed", "mixed", 4, 32, symmetric=False, budget_bits=4.9, zero_point_domain="int",
                    scale_bits=16)
    rows = evaluate_methods(model, _windows(2, 1), _windows(2, 2), (Method("fp32", "fp32", 32), method), fast=True)
    assert rows[1]["bits_per_weight"] <= 4.9
    assert rows[1]["int8_layers"]  # the budget pays for some int8 layers
    assert rows[1]["bits_per_weight"] == grid_bits_per_weight(model, 4, 32, False, "int", 16,
                                                               int8_layers=tuple(rows[1]["int8_layers"]))
    text = method_table_text(rows, base=rows[0]["perplexity"], with_seconds=True)
    assert "vs fp32" in text and "+0 %" in text


def test_choose_int8_layers_ranks_every_layer_and_spends_the_budget_on_the_most_sensitive():
    model = _tiny_llama()
    method = Method("mixed", "mixed", 4, 32, symmetric=False, budget_bits=4.9, zero_point_domain="int",
                    scale_bits=16)
    int8_layers, sensitivity = choose_int8_layers(model, method, _windows(2, 2), fast=True)
    assert len(sensitivity) == 14 and all(value >= 0 for value in sensitivity.values())  # 7 layers x 2 blocks
    assert int8_layers and set(int8_layers) <= set(sensitivity)
    assert grid_bits_per_weight(model, 4, 32, False, "int", 16, int8_layers=int8_layers) <= 4.9
    with pytest.raises(ValueError, match="kind must be 'mixed'"):
        choose_int8_layers(model, Method("rtn", "rtn", 4), _windows(2, 2))


def test_every_row_goes_through_apply_method_once_with_its_calibration_set(monkeypatch):
    seen = []

    def recorder(model, method, calibration, *args, **kwargs):
        seen.append((method.name, calibration.shape[0]))
        return model, 32.0

    monkeypatch.setattr(helper.methods, "apply_method", recorder)
    methods = (Method("a", "gptq", 4, 32), Method("b", "rtn", 4, 32, calibration="other"))
    evaluate_methods(_tiny_llama(), _windows(1, 1), {"same": _windows(2, 2), "other": _windows(3, 3)}, methods)
    assert seen == [("a", 2), ("b", 3)]
    with pytest.raises(ValueError, match="calibrates on 'other'"):
        evaluate_methods(_tiny_llama(), _windows(1, 1), _windows(2, 2), methods[1:])


def test_the_bench_tables_come_from_one_code_path():
    path = Path(__file__).parents[1] / "bench" / "lesson06_methods.py"
    spec = importlib.util.spec_from_file_location("lesson06_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    names = [method.name for _, method in bench.ROWS] + [method.name for method in bench.Q4_1_ROWS]
    assert len(names) == len(set(names)) and all(isinstance(m, Method) for _, m in bench.ROWS)
    assert {table for table, _ in bench.ROWS} <= set(bench.TITLES)
    source = path.read_text()
    assert source.count("evaluate_methods(") == 1  # every quantized row: apply_method via evaluate_methods
    for direct in ("gptq_quantize", "awq_quantize", "rtn_quantize", "replace_linear"):
        assert direct not in source


def test_bad_methods_get_clear_errors():
    model = _tiny_llama()
    with pytest.raises(ValueError, match="kind must be one of"):
        Method("x", "magic")
    with pytest.raises(ValueError, match="applied with helper.smoothquant"):
        apply_method(model, Method("w8a8", "w8a8"), _windows(1, 0))
    with pytest.raises(ValueError, match="zero_point_domain"):
        Method("x", "gptq", zero_point_domain="half")
