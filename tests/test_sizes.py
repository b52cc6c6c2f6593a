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
