import pytest
import torch
from safetensors import safe_open

from helper.checkpoint_export import export_gptq_checkpoint, pack_int32, read_gptq_checkpoint, unpack_int32
from helper.gptq import GPTQConfig, gptq_quantize_weight


def test_pack_int32_worked_example():
    codes = torch.arange(8).reshape(8, 1)  # 8 codes along dim 0 -> one word
    assert pack_int32(codes, 4, dim=0).item() == 0x76543210
    top = torch.tensor([[0], [0], [0], [0], [0], [0], [0], [15]])  # the sign bit is set: a negative int32
    assert pack_int32(top, 4, dim=0).item() == 0xF0000000 - (1 << 32)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("dim", [0, 1])
def test_pack_unpack_round_trip(bits, dim):
    torch.manual_seed(bits)
    codes = torch.randint(0, 1 << bits, (32, 64), dtype=torch.int32)
    words = pack_int32(codes, bits, dim)
    assert words.dtype == torch.int32 and words.shape[dim] == codes.shape[dim] * bits // 32
    assert torch.equal(unpack_int32(words, bits, dim), codes)


def test_pack_refuses_out_of_range_codes_and_odd_sizes():
    with pytest.raises(ValueError, match=r"integers in \[0, 15\]"):
        pack_int32(torch.tensor([[16]] * 8), 4, 0)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        pack_int32(torch.zeros(6, 2, dtype=torch.int32), 4, 0)
    with pytest.raises(ValueError, match="bits"):
        pack_int32(torch.zeros(6, 2, dtype=torch.int32), 3, 0)


def _gptq(config):
    torch.manual_seed(0)
    weight = torch.randn(64, 256) * 0.05
    x = torch.randn(512, 256)
    return gptq_quantize_weight(weight, 2 * x.T @ x / 512, config)


@pytest.mark.parametrize("config", [GPTQConfig(bits=4, group_size=64, scale_bits=16),
                                    GPTQConfig(bits=4, group_size=128, symmetric=False, zero_point_domain="int",
                                               act_order=True, scale_bits=16),
                                    GPTQConfig(bits=2, group_size=64, symmetric=False, zero_point_domain="int",
                                               scale_bits=16)],
                         ids=["int4-sym-g64", "int4-asym-actorder-g128", "int2-asym-g64"])
def test_gptq_checkpoint_round_trip_gives_the_same_weights(tmp_path, config):
    result = _gptq(config)
    path = tmp_path / "model.safetensors"
    quantize_config = export_gptq_checkpoint({"model.layers.0.mlp.up_proj": result.quantized}, path)
    assert quantize_config["bits"] == config.bits and quantize_config["sym"] == config.symmetric
    with safe_open(str(path), framework="pt") as handle:
        shapes = {key: (tuple(handle.get_tensor(key).shape), handle.get_tensor(key).dtype) for key in handle.keys()}
    per_word, groups = 32 // config.bits, 256 // config.group_size
    prefix = "model.layers.0.mlp.up_proj."
    assert shapes == {prefix + "qweight": ((256 // per_word, 64), torch.int32),
                      prefix + "qzeros": ((groups, 64 // per_word), torch.int32),
                      prefix + "scales": ((groups, 64), torch.float16),
                      prefix + "g_idx": ((256,), torch.int32)}
    weights = read_gptq_checkpoint(path)
    assert torch.equal(weights["model.layers.0.mlp.up_proj"], result.weight)


def test_export_refuses_float_minimums_and_mixed_schemes(tmp_path):
    float_grid = _gptq(GPTQConfig(bits=4, group_size=64, symmetric=False, zero_point_domain="float"))
    with pytest.raises(ValueError, match="no integer zero-point"):
        export_gptq_checkpoint({"a": float_grid.quantized}, tmp_path / "x.safetensors")
    a, b = _gptq(GPTQConfig(group_size=64)), _gptq(GPTQConfig(group_size=128))
    with pytest.raises(ValueError, match="share bits, group size"):
        export_gptq_checkpoint({"a": a.quantized, "b": b.quantized}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="non-empty"):
        export_gptq_checkpoint({}, tmp_path / "x.safetensors")


def test_reader_refuses_files_without_a_quantize_config(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="no quantize_config"):
        read_gptq_checkpoint(tmp_path / "plain.safetensors")
