import pytest
import torch
import torch.nn.functional as F

from helper.outliers import LLMInt8Linear, find_outlier_features, int8_matmul_vectorwise, llm_int8_linear


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 96, generator=generator)
    x[:, [3, 50]] *= 40  # planted outlier features
    weight = torch.randn(32, 96, generator=generator) / 10
    bias = torch.randn(32, generator=generator)
    return x, weight, bias


def test_threshold_zero_is_exactly_the_full_precision_layer():
    x, weight, bias = _data()
    assert torch.equal(llm_int8_linear(x, weight, bias, threshold=0.0), x @ weight.T + bias)
    layer = torch.nn.Linear(96, 32)
    assert torch.equal(LLMInt8Linear.from_linear(layer, 0.0)(x), F.linear(x, layer.weight, layer.bias))


def test_a_huge_threshold_is_the_pure_int8_path():
    x, weight, bias = _data()
    assert torch.equal(llm_int8_linear(x, weight, bias, threshold=1e9), int8_matmul_vectorwise(x, weight) + bias)


def test_int8_vectorwise_matches_a_reference_written_out():
    x, weight, _ = _data(1)
    x_scale = x.abs().amax(1, keepdim=True) / 127
    w_scale = weight.abs().amax(1, keepdim=True) / 127
    reference = (torch.round(x / x_scale) @ torch.round(weight / w_scale).T) * x_scale * w_scale.T
    assert torch.allclose(int8_matmul_vectorwise(x, weight), reference, rtol=1e-5, atol=1e-5)


def test_splitting_off_outliers_lowers_the_error():
    x, weight, bias = _data(2)
    exact = x @ weight.T + bias
    pure = (llm_int8_linear(x, weight, bias, threshold=1e9) - exact).pow(2).mean()
    split = (llm_int8_linear(x, weight, bias, threshold=6.0) - exact).pow(2).mean()
    assert split < pure / 10


def test_matches_bitsandbytes_vectorwise_quantization():
    bnb = pytest.importorskip("bitsandbytes.functional")
    x, _, _ = _data(3)
    codes, scales, _ = bnb.int8_vectorwise_quant(x)
    assert torch.equal(codes.float(), torch.round(x / (x.abs().amax(1, keepdim=True) / 127)))
    assert torch.allclose(scales, x.abs().amax(1))


def test_outlier_features_of_a_tiny_model_and_bad_input():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1)).eval()
    with torch.no_grad():
        model.model.layers[0].input_layernorm.weight[7] = 100.0
    found = find_outlier_features(model, torch.randint(0, 64, (2, 16)))
    assert found["model.layers.0.self_attn.q_proj"].tolist() == [7]
    with pytest.raises(ValueError, match="weight must be 2-D"):
        llm_int8_linear(torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="x has 3 features, the weight expects 4"):
        int8_matmul_vectorwise(torch.ones(2, 3), torch.ones(5, 4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        llm_int8_linear(torch.full((2, 3), float("nan")), torch.ones(4, 3))
    with pytest.raises(ValueError, match="no calibration data"):
        find_outlier_features(model, torch.zeros(0, 4, dtype=torch.long))


@pytest.mark.parametrize("call, message", [
    (lambda: llm_int8_linear(torch.ones(2, 3), torch.ones(4, 3), threshold=float("nan")),
     "threshold must be a finite number, got nan"),
    (lambda: llm_int8_linear(torch.ones(2, 3), torch.ones(4, 3), threshold=-1), "threshold must be >= 0"),
    (lambda: llm_int8_linear(torch.ones(2, 3), torch.ones(4, 3), threshold="6"), "threshold must be a number"),
    (lambda: llm_int8_linear(torch.ones(2, 3), torch.ones(4, 3), torch.full((4,), float("nan"))),
     "bias contains NaN or Inf"),
    (lambda: llm_int8_linear(torch.ones(2, 3), torch.ones(4, 3), torch.ones(3)), r"bias must have shape \(4,\)"),
    (lambda: llm_int8_linear(torch.ones(2, 3, dtype=torch.long), torch.ones(4, 3)), "x must be a floating-point"),
    (lambda: llm_int8_linear([[1.0]], torch.ones(4, 1)), "x must be a torch.Tensor"),
    (lambda: int8_matmul_vectorwise(torch.ones(2, 3), torch.ones(4, 3, dtype=torch.int8)),
     "weight must be a floating-point"),
    (lambda: LLMInt8Linear(torch.nn.Linear(3, 2), threshold=float("nan")), "threshold must be a finite number"),
    (lambda: LLMInt8Linear("linear"), "linear must be an nn.Linear"),
], ids=["nan-threshold", "negative-threshold", "string-threshold", "nan-bias", "bias-shape", "int-x", "list-x",
        "int-weight", "layer-nan-threshold", "layer-string"])
def test_odd_thresholds_and_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_an_infinite_threshold_is_pure_int8():
    x, weight = torch.randn(4, 8), torch.randn(3, 8)
    assert torch.equal(llm_int8_linear(x, weight, threshold=float("inf")), int8_matmul_vectorwise(x, weight))


def test_an_overflowing_product_is_an_error_not_nan():
    with pytest.raises(ValueError, match="x W\\^T overflows torch.float32"):
        llm_int8_linear(torch.full((2, 8), 1e38), torch.randn(3, 8, generator=torch.Generator().manual_seed(0)))


def test_int8_matmul_is_exact_where_one_fp32_sum_would_not_be():
    # 1536 products of 127 x 127 sum to 24,774,144 > 2^24: one fp32 accumulation could round, the chunked sum must not.
    x = torch.full((3, 1536), 127.0)
    x[1, ::3] = -127.0
    weight = torch.full((2, 1536), 1.0)
    weight[1, 1::2] = -1.0
    out = int8_matmul_vectorwise(x, weight)
    codes_x = torch.clamp(torch.round(x / (x.abs().amax(1, keepdim=True) / 127)), -127, 127).double()
    codes_w = torch.clamp(torch.round(weight / (weight.abs().amax(1, keepdim=True) / 127)), -127, 127).double()
    exact = (codes_x @ codes_w.T) * (x.abs().amax(1, keepdim=True).double() / 127) * \
        (weight.abs().amax(1, keepdim=True).double().T / 127)
    torch.testing.assert_close(out, exact.float(), rtol=0, atol=0)
