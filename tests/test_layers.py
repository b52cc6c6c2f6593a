import copy
import json

import pytest
import torch
from torch import nn

import helper
from helper import QuantScheme
from helper.layers import W2A16Linear, W4A16Linear, W8A16Linear, fit_group_size, load_quantized, replace_linear, \
    save_quantized


def _linear(in_features=96, out_features=40, bias=True, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(in_features, out_features, bias=bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_w8a16_equals_linear_with_dequantized_weights(dtype, bias):
    linear = _linear(bias=bias).to(dtype)
    layer = W8A16Linear.from_linear(linear)
    assert layer.int8_weights.dtype == torch.int8 and layer.scales.dtype == dtype
    reference = copy.deepcopy(linear)
    reference.weight.data = layer.dequantized_weight()
    x = torch.randn(5, 96).to(dtype)
    assert torch.equal(layer(x), reference(x))
    assert torch.allclose(layer(x).float(), linear(x).float(), atol=0.05)


@pytest.mark.parametrize("cls, bits", [(W4A16Linear, 4), (W2A16Linear, 2)], ids=["int4", "int2"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("group_size", [16, 32, 96])
def test_wna16_matches_linear_quant_and_packs_for_real(cls, bits, symmetric, group_size):
    linear = _linear()
    layer = cls.from_linear(linear, group_size=group_size, symmetric=symmetric)
    expected = helper.quantize_tensor(linear.weight.detach(), layer.scheme).dequantize()
    assert torch.equal(layer.dequantized_weight(), expected)
    reference = copy.deepcopy(linear)
    reference.weight.data = expected
    x = torch.randn(3, 96)
    assert torch.equal(layer(x), reference(x))
    # storage: exactly bits per weight for the codes, plus one scale (and min) per group
    groups = 40 * 96 // group_size
    assert layer.packed_weights.dtype == torch.uint8
    assert helper.tensor_bytes(layer.packed_weights) * 8 == 40 * 96 * bits
    expected_bytes = 40 * 96 * bits // 8 + groups * 4 * (1 if symmetric else 2) + 40 * 4
    assert helper.compute_module_sizes(layer)[""] == expected_bytes


def test_fit_group_size_follows_quanto():
    assert fit_group_size(576) == 96 and fit_group_size(1536) == 128 and fit_group_size(64, 32) == 32
    with pytest.raises(ValueError, match="no multiple of 32 up to 128 divides in_features 100"):
        fit_group_size(100)


def test_replace_linear_swaps_all_but_excluded():
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(_linear(8, 8), nn.ReLU(), _linear(8, 8, seed=1)))
    model.add_module("lm_head", _linear(8, 4, seed=2))
    head = model.lm_head
    assert replace_linear(model, W8A16Linear) is model
    assert isinstance(model.encoder[0], W8A16Linear) and isinstance(model.encoder[2], W8A16Linear)
    assert model.lm_head is head  # untouched


def test_replace_linear_keeps_tied_weights_tied():
    first, second = _linear(8, 8), _linear(8, 8)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    replace_linear(model, W8A16Linear, exclude=())
    assert model[0] is model[1]


def test_replace_linear_rejects_non_layers():
    with pytest.raises(ValueError, match="target_class must be a quantized layer class"):
        replace_linear(nn.Sequential(_linear()), nn.Linear)
    with pytest.raises(ValueError, match="group_size 128 does not divide in_features 96"):
        replace_linear(nn.Sequential(_linear()), W4A16Linear, group_size=128)
    model = replace_linear(nn.Sequential(_linear()), W4A16Linear, group_size=128, adapt_group_size=True)
    assert model[0].group_size == 96


def test_save_and_reload_give_identical_outputs(tmp_path):
    model = nn.Sequential(_linear(64, 64), nn.ReLU(), _linear(64, 32, seed=1), nn.ReLU(), _linear(32, 8, seed=2))
    replace_linear(model, W4A16Linear, exclude=("4",), group_size=32)
    model[2] = W8A16Linear.from_linear(_linear(64, 32, seed=1))
    path = save_quantized(model, tmp_path / "model.safetensors")
    fresh = nn.Sequential(_linear(64, 64, seed=9), nn.ReLU(), _linear(64, 32, seed=9), nn.ReLU(), _linear(32, 8, seed=9))
    load_quantized(fresh, path)
    x = torch.randn(4, 64)
    assert torch.equal(fresh(x), model(x))
    assert isinstance(fresh[0], W4A16Linear) and isinstance(fresh[2], W8A16Linear)


def test_save_and_reload_a_real_llm_with_tied_embeddings(tmp_path, smollm2):
    model, tokenizer = smollm2
    quantized = replace_linear(copy.deepcopy(model), W8A16Linear)
    path = save_quantized(quantized, tmp_path / "smollm2-w8a16.safetensors")
    assert path.stat().st_size < 0.45 * model.get_memory_footprint()
    from transformers import AutoModelForCausalLM

    skeleton = AutoModelForCausalLM.from_config(model.config)
    reloaded = load_quantized(skeleton, path).eval()
    batch = tokenizer("Quantized models can be saved and loaded.", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, quantized(**batch).logits)


@pytest.mark.parametrize("call, message", [
    (lambda: save_quantized(nn.Sequential(_linear()), "/tmp/never.safetensors"), "no quantized layers"),
    (lambda: load_quantized(nn.Sequential(_linear()), "/tmp/does-not-exist.safetensors"), "no quantized model"),
    (lambda: W4A16Linear(96, 8, group_size=0), "group_size 0 does not divide"),
])
def test_bad_input(call, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call()


def test_load_rejects_a_plain_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not written by save_quantized"):
        load_quantized(nn.Sequential(_linear()), tmp_path / "plain.safetensors")


# Reference: optimum-quanto.
def test_w8a16_is_bit_identical_to_quanto_qint8(smollm2):
    from optimum.quanto import freeze, qint8, quantize

    model, _ = smollm2
    for name in ["model.layers.0.self_attn.q_proj", "model.layers.7.mlp.down_proj", "model.layers.29.mlp.up_proj"]:
        linear = model.get_submodule(name)
        ours = W8A16Linear.from_linear(linear)
        theirs = nn.Sequential(copy.deepcopy(linear))
        quantize(theirs, weights=qint8)
        freeze(theirs)
        weight = theirs[0].weight
        assert torch.equal(weight._data, ours.int8_weights)
        assert torch.equal(weight._scale.flatten(), ours.scales)
        x = torch.randn(2, linear.in_features)
        assert torch.equal(theirs(x), ours(x))


def _quanto_qint8(linear):
    from optimum.quanto import freeze, qint8, quantize

    theirs = nn.Sequential(copy.deepcopy(linear))
    quantize(theirs, weights=qint8)
    freeze(theirs)
    return theirs


# "Bit-identical to quanto" holds for fp32 weights (above); lesson 04 and the README state the two exceptions.
def test_w8a16_bf16_codes_differ_from_quanto_by_at_most_one():
    # quanto divides in bf16 and rounds the already-rounded quotient; we divide in fp32 by the fp32 scale
    # (stored rounded to bf16, so both keep the same scales) and round once
    linear = _linear(128, 64, bias=False, seed=1).to(torch.bfloat16)
    ours = W8A16Linear.from_linear(linear)
    theirs = _quanto_qint8(linear)[0].weight
    assert torch.equal(theirs._scale.flatten(), ours.scales)
    weight = linear.weight.detach().float()
    fp32_scale = weight.abs().amax(1, keepdim=True) / 127
    assert torch.equal(ours.int8_weights, torch.round(weight / fp32_scale).to(torch.int8))
    quotient = linear.weight.detach() / ours.scales[:, None]  # bf16 / bf16 -> rounded to bf16
    assert torch.equal(theirs._data.to(torch.bfloat16), torch.round(quotient).clamp(-128, 127))
    difference = theirs._data.int() - ours.int8_weights.int()
    assert (int((difference != 0).sum()), difference.numel()) == (1377, 8192)  # the count lesson 04 quotes
    assert difference.abs().max() == 1


def test_w8a16_with_bias_is_within_one_ulp_of_quanto():
    # F.linear adds the bias inside the matmul (addmm); quanto adds it to the finished product: rounding differs
    x = torch.randn(16, 576, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        linear = _linear(576, 576, bias=True, seed=0)
        ours, theirs = W8A16Linear.from_linear(linear), _quanto_qint8(linear)
        assert torch.equal(theirs(x), x @ ours.dequantized_weight().T + linear.bias)  # product, then + bias
        largest = ours(x).abs().max()
        ulp = torch.nextafter(largest, torch.tensor(float("inf"))) - largest
        assert (ours(x) - theirs(x)).abs().max() <= ulp  # at most one ulp of the largest output
        no_bias = _linear(576, 576, bias=False, seed=0)
        assert torch.equal(W8A16Linear.from_linear(no_bias)(x), _quanto_qint8(no_bias)(x))


def test_w4a16_close_to_quanto_qint4(smollm2):
    from optimum.quanto import freeze, qint4, quantize

    linear = smollm2[0].get_submodule("model.layers.3.mlp.down_proj")
    theirs = nn.Sequential(copy.deepcopy(linear))
    quantize(theirs, weights=qint4)
    freeze(theirs)
    ours = W4A16Linear.from_linear(linear, group_size=128, symmetric=False)
    x = torch.randn(4, linear.in_features)
    reference = linear(x).detach()
    error_ours = (ours(x) - reference).pow(2).mean()
    error_theirs = (theirs(x) - reference).pow(2).mean()
    # same family (4-bit, g128, scale + float minimum); quanto also optimises the range: within 25 %
    assert error_ours.item() == pytest.approx(error_theirs.item(), rel=0.25)
    assert torch.allclose(ours(x), theirs(x), atol=0.15 * reference.abs().max().item())


# A quantized checkpoint is untrusted input: every way a file can lie is a ValueError naming the file.
def _checkpoint(tmp_path, layers, tensors, name="evil.safetensors"):
    from safetensors.torch import save_file

    path = tmp_path / name
    metadata = {"quantized_layers": layers if isinstance(layers, str) else json.dumps(layers)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _good(tmp_path):
    model = nn.Sequential(_linear(64, 32), nn.ReLU(), _linear(32, 8, seed=1))
    replace_linear(model, W4A16Linear, exclude=("2",), group_size=32)
    path = save_quantized(model, tmp_path / "good.safetensors")
    from safetensors.torch import load_file

    return load_file(str(path)), json.loads(_metadata(path)["quantized_layers"])


def _metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def _fresh():
    return nn.Sequential(_linear(64, 32, seed=5), nn.ReLU(), _linear(32, 8, seed=6))


def _edit(layers, **changes):
    layers = json.loads(json.dumps(layers))
    layers["0"].update(changes)
    return layers


@pytest.mark.parametrize("change, message", [
    (lambda l, t: ({"0": {**l["0"], "in_features": 10**12, "out_features": 10**12}}, t),
     r"is 1000000000000 -> 1000000000000 in the file but 64 -> 32 in the model"),
    (lambda l, t: (_edit(l, dtype="float64"), t), "dtype must be one of float32, float16, bfloat16"),
    (lambda l, t: (_edit(l, dtype="__class__"), t), "dtype must be one of"),
    (lambda l, t: (_edit(l, **{"class": "Sequential"}), t), "class must be one of W8A16Linear"),
    (lambda l, t: (_edit(l, **{"class": ["W4A16Linear"]}), t), "class must be one of W8A16Linear"),
    (lambda l, t: (_edit(l, extra=1), t), "a W4A16Linear entry has keys"),
    (lambda l, t: (_edit(l, group_size=7), t), "group_size 7, which does not divide in_features 64"),
    (lambda l, t: (_edit(l, group_size=0), t), r"group_size must be an integer in \[1, 64\]"),
    (lambda l, t: (_edit(l, symmetric="False"), t), "symmetric must be True or False"),
    (lambda l, t: (_edit(l, bias="True"), t), "bias must be True or False"),
    (lambda l, t: (_edit(l, bias=False), t), "has bias=False in the file, True in the model"),
    (lambda l, t: ({"1": l["0"]}, t), r"layer '1' is a ReLU in the model; only nn.Linear layers are replaced"),
    (lambda l, t: ({"": l["0"]}, t), r"layer '' does not exist in the model"),
    (lambda l, t: ({"0.weight": l["0"]}, t), r"layer '0.weight' does not exist in the model"),
    (lambda l, t: ({"extra": l["0"]}, t), r"layer 'extra' does not exist in the model"),
    (lambda l, t: ({"0": 5}, t), "class must be one of"),
    (lambda l, t: ([], t), "'quantized_layers' must map layer names"),
    (lambda l, t: ({}, t), "'quantized_layers' must map layer names"),
    (lambda l, t: ("{not json", t), "'quantized_layers' metadata is not valid JSON"),
    (lambda l, t: ("[" * 100_000 + "]" * 100_000, t), "not valid JSON"),
    (lambda l, t: (l, {k: v for k, v in t.items() if k != "0.scales"}), "lacks tensor '0.scales'"),
    (lambda l, t: (l, {**t, "0.scales": torch.ones(32, 3)}), r"tensor '0.scales' is F32 \[32, 3\], but its "
                                                             r"metadata describes F32 \[32, 2\]"),
    (lambda l, t: (l, {**t, "0.scales": t["0.scales"].double()}), r"is F64 \[32, 2\]"),
    (lambda l, t: (l, {**t, "0.packed_weights": torch.zeros(32, 32, dtype=torch.int8)}), r"is I8 \[32, 32\]"),
    (lambda l, t: (l, {**t, "3.weight": torch.ones(2)}), "has tensors the model does not: \\['3.weight'\\]"),
    (lambda l, t: (l, {**t, "2.weight": torch.ones(8, 31)}), r"wrong shape for this model: \['2.weight \[8, 31\]"),
    (lambda l, t: (l, {**t, "0.scales": torch.full((32, 2), float("nan"))}), r"NaN or Inf values .*\['0.scales'\]"),
], ids=["terabyte-sizes", "dtype-float64", "dtype-attribute", "class-unknown", "class-list", "extra-key",
        "group-not-dividing", "group-zero", "symmetric-string", "bias-string", "bias-mismatch", "not-a-linear",
        "root", "parameter-path", "new-submodule", "config-not-dict", "layers-list", "layers-empty", "json-corrupt",
        "json-deep", "tensor-missing", "tensor-shape", "tensor-dtype", "packed-dtype", "tensor-unexpected",
        "tensor-wrong-shape", "nan-scales"])
def test_load_refuses_a_lying_checkpoint_and_leaves_the_model_alone(tmp_path, change, message):
    tensors, layers = _good(tmp_path)
    layers, tensors = change(layers, dict(tensors))
    path = _checkpoint(tmp_path, layers, tensors)
    model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message) as error:
        load_quantized(model, path)
    assert str(path) in str(error.value)
    assert isinstance(model[0], nn.Linear) and set(model.state_dict()) == set(before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_load_refuses_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="junk.safetensors is not a readable safetensors file"):
        load_quantized(_fresh(), path)


@pytest.mark.parametrize("call, message", [
    (lambda: load_quantized("model", "x.safetensors"), "model must be an nn.Module"),
    (lambda: load_quantized(nn.Linear(2, 2), 5), "path must be a str or Path"),
    (lambda: fit_group_size(576, 128, 0), r"step must be an integer in \[1, "),
    (lambda: fit_group_size(576, 128, -32), "step must be an integer"),
    (lambda: fit_group_size(0), "in_features must be an integer"),
    (lambda: fit_group_size(576, 2.5), "preferred must be an integer"),
    (lambda: W8A16Linear(10**13, 10**13), "in_features must be an integer in"),
    (lambda: W8A16Linear(4, 4, bias="False"), "bias must be True or False"),
    (lambda: W8A16Linear(4, 4, dtype=torch.int8), "dtype must be one of"),
    (lambda: W4A16Linear(64, 4, symmetric="False"), "symmetric must be True or False"),
    (lambda: W8A16Linear.from_linear("linear"), "linear must be an nn.Linear"),
    (lambda: W4A16Linear.from_linear(nn.Conv1d(2, 2, 1)), "linear must be an nn.Linear"),
    (lambda: W8A16Linear.from_linear(_linear(32, 8))(torch.ones(2, 32, dtype=torch.long)),
     "x must be floating-point activations"),
    (lambda: W4A16Linear.from_linear(_linear(64, 8), 32)(torch.ones(2, 64, dtype=torch.int32)),
     "x must be floating-point activations"),
    (lambda: W4A16Linear.from_linear(_linear(64, 8), 32)(torch.ones(2, 63)), r"x must end in 64 features"),
    (lambda: W8A16Linear.from_linear(_linear(32, 8))([1.0]), "x must be a torch.Tensor"),
], ids=["model-type", "path-type", "step-zero", "step-negative", "in-zero", "preferred-float", "huge-layer",
        "bias-string", "dtype-int", "symmetric-string", "from-string", "from-conv", "w8-int-activations",
        "w4-int-activations", "w4-features", "w8-list"])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_fit_group_size_with_a_huge_preference_is_quick():
    assert fit_group_size(576, 1 << 24, 32) == fit_group_size(576, 576, 32) == 576
    assert fit_group_size(10, 128, 3) == 5  # 128, 125, ... 8, 5, as the step-by-step search finds


def test_replace_linear_progress_must_be_a_boolean():
    with pytest.raises(ValueError, match="progress must be True or False"):
        replace_linear(nn.Sequential(_linear()), W8A16Linear, progress="False")
