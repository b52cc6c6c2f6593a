"""Quantized linear layers (int8 and packed int4/int2 weights, 16/32-bit activations) and how to swap them in.

Taught in 04. Storage is real: int8 weights are int8 tensors; 4-bit weights are packed two per byte.
Every forward dequantizes the weight to the activation dtype and hands off to F.linear.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .linear_quant import QuantizedTensor, QuantScheme, quantize_tensor
from .packing import pack, packed_length, unpack

__all__ = ["W8A16Linear", "WnA16Linear", "W4A16Linear", "W2A16Linear", "fit_group_size", "replace_linear",
           "save_quantized", "load_quantized"]


class W8A16Linear(nn.Module):
    """int8 weights with one scale per output channel (symmetric); activations stay in 16 or 32 bits."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("int8_weights", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype | None = None) -> "W8A16Linear":
        """Quantize an existing nn.Linear: w = int8_weights * scales[:, None], scale = max|row| / 127."""
        dtype = dtype or linear.weight.dtype
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype)
        quantized = quantize_tensor(linear.weight.detach(), QuantScheme(bits=8, granularity="per_channel"))
        layer.int8_weights.copy_(quantized.data)
        layer.scales.copy_(quantized.scale.flatten())
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight the layer computes with, (out, in)."""
        dtype = dtype or self.scales.dtype
        return self.int8_weights.to(dtype) * self.scales.to(dtype).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b with W dequantized to x's dtype."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class WnA16Linear(nn.Module):
    """Low-bit weights (bits dividing 8), one scale per group of `group_size` inputs, packed 8 // bits per byte.

    symmetric: codes -2^(b-1)..2^(b-1)-1 stored shifted to unsigned; else codes 0..2^b-1 with a float
    minimum per group (x_hat = q * scale + min, as optimum-quanto's qint4 and GGUF Q4_1 do).
    """

    bits = 4

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 128,
                 symmetric: bool = True, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if group_size < 1 or in_features % group_size:
            raise ValueError(f"group_size {group_size} does not divide in_features {in_features} "
                             f"(fit_group_size({in_features}) suggests one that does)")
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.symmetric = group_size, symmetric
        groups = in_features // group_size
        self.register_buffer("packed_weights", torch.zeros(out_features, packed_length(in_features, self.bits),
                                                           dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=dtype))
        self.register_buffer("minimums", None if symmetric else torch.zeros(out_features, groups, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @property
    def scheme(self) -> QuantScheme:
        """The QuantScheme this layer's weights follow."""
        if self.symmetric:
            return QuantScheme(bits=self.bits, granularity="per_group", group_size=self.group_size)
        return QuantScheme(bits=self.bits, symmetric=False, signed=False, granularity="per_group",
                           group_size=self.group_size, zero_point_domain="float")

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128, symmetric: bool = True,
                    dtype: torch.dtype | None = None, adapt_group_size: bool = False) -> "WnA16Linear":
        """Quantize an existing nn.Linear group-wise (round to nearest) and pack the codes.

        adapt_group_size: where group_size does not divide in_features, use fit_group_size instead of failing.
        """
        dtype = dtype or linear.weight.dtype
        if adapt_group_size:
            group_size = fit_group_size(linear.in_features, group_size)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size, symmetric, dtype)
        quantized = quantize_tensor(linear.weight.detach(), layer.scheme)
        return cls.from_quantized(quantized, linear.bias, dtype)

    @classmethod
    def from_quantized(cls, quantized: QuantizedTensor, bias: torch.Tensor | None = None,
                       dtype: torch.dtype = torch.float32) -> "WnA16Linear":
        """Pack codes and scales found elsewhere (RTN, GPTQ) on this layer's per-group grid into a layer."""
        scheme = quantized.scheme
        if scheme.granularity != "per_group" or scheme.bits != cls.bits or len(quantized.shape) != 2:
            raise ValueError(f"{cls.__name__} stores a 2-D per-group {cls.bits}-bit tensor, got "
                             f"{scheme.granularity} {scheme.bits}-bit of shape {tuple(quantized.shape)}")
        out_features, in_features = quantized.shape
        layer = cls(in_features, out_features, bias is not None, scheme.group_size, scheme.symmetric, dtype)
        if scheme != layer.scheme:
            raise ValueError(f"the tensor's scheme {scheme} is not this layer's grid {layer.scheme}")
        codes = quantized.codes().to(torch.int32) - scheme.qmin  # (out, in), now 0..2^b - 1
        layer.packed_weights.copy_(pack(codes, cls.bits))
        layer.scales.copy_(quantized.scale.reshape(out_features, -1))
        if not scheme.symmetric:
            layer.minimums.copy_(quantized.zero_point.reshape(out_features, -1))
        if bias is not None:
            layer.bias.copy_(bias.detach())
        return layer

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight the layer computes with, (out, in)."""
        dtype = dtype or self.scales.dtype
        codes = unpack(self.packed_weights, self.bits, self.in_features).to(dtype)  # (out, in)
        codes = codes.reshape(self.out_features, -1, self.group_size)  # (out, groups, g)
        if self.symmetric:
            weight = (codes + self.scheme.qmin) * self.scales.to(dtype).unsqueeze(-1)
        else:
            weight = codes * self.scales.to(dtype).unsqueeze(-1) + self.minimums.to(dtype).unsqueeze(-1)
        return weight.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b with W unpacked and dequantized to x's dtype."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, symmetric={self.symmetric}")


class W4A16Linear(WnA16Linear):
    """4-bit weights, two per byte, per-group scales."""

    bits = 4


class W2A16Linear(WnA16Linear):
    """2-bit weights, four per byte, per-group scales."""

    bits = 2


def fit_group_size(in_features: int, preferred: int = 128, step: int = 32) -> int:
    """The preferred group size, or the next smaller multiple of `step` that divides in_features (as quanto does).

    SmolLM2's hidden size 576 is not a multiple of 128: fit_group_size(576) == 96.
    """
    group_size = preferred
    while in_features % group_size and group_size > step:
        group_size -= step
    if in_features % group_size:
        raise ValueError(f"no multiple of {step} up to {preferred} divides in_features {in_features}")
    return group_size


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or name.endswith("." + p) for p in patterns)


def replace_linear(model: nn.Module, target_class: type[nn.Module], exclude: tuple[str, ...] = ("lm_head",),
                   progress: bool = False, **kwargs) -> nn.Module:
    """Swap every nn.Linear (except names in `exclude`) for target_class.from_linear(linear, **kwargs), in place.

    Returns the model. Linear layers that share one weight (tied) become one shared quantized module.
    """
    if not (isinstance(target_class, type) and hasattr(target_class, "from_linear")):
        raise ValueError(f"target_class must be a quantized layer class with from_linear, got {target_class!r}")
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not _matches(name, exclude)]
    converted: dict[int, nn.Module] = {}  # id(weight) -> quantized module, so tied weights stay tied
    for name, linear in tqdm(targets, desc=f"-> {target_class.__name__}", disable=not progress, leave=False):
        key = id(linear.weight)
        if key not in converted:
            converted[key] = target_class.from_linear(linear, **kwargs)
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child_name, converted[key])
    return model


_LAYER_CLASSES = {cls.__name__: cls for cls in (W8A16Linear, W4A16Linear, W2A16Linear)}


def _layer_config(module: nn.Module) -> dict:
    config = {"class": type(module).__name__, "in_features": module.in_features,
              "out_features": module.out_features, "bias": module.bias is not None,
              "dtype": str(module.scales.dtype).removeprefix("torch.")}
    if isinstance(module, WnA16Linear):
        config.update(group_size=module.group_size, symmetric=module.symmetric)
    return config


def save_quantized(model: nn.Module, path: str | Path) -> Path:
    """Write the model's state dict to safetensors, with the quantized layers' configuration in its metadata."""
    layers = {name: _layer_config(module) for name, module in model.named_modules()
              if type(module).__name__ in _LAYER_CLASSES}
    if not layers:
        raise ValueError("the model has no quantized layers to save (run replace_linear first)")
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    path = Path(path)
    # safetensors refuses tensors that share memory (tied weights): keep the first name of each.
    seen: dict[tuple[int, int, tuple], str] = {}
    unique = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.numel(), tuple(tensor.shape))
        if key not in seen:
            seen[key] = name
            unique[name] = tensor
    save_file(unique, str(path), metadata={"quantized_layers": json.dumps(layers)})
    return path


def load_quantized(model: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild the quantized layers described in the file on `model` (same architecture), then load tensors.

    Only safetensors is read: no pickle, so loading a file never runs code.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no quantized model at {path}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "quantized_layers" not in metadata:
        raise ValueError(f"{path} was not written by save_quantized (no 'quantized_layers' metadata)")
    for name, config in json.loads(metadata["quantized_layers"]).items():
        config = dict(config)
        cls = _LAYER_CLASSES[config.pop("class")]
        config["dtype"] = getattr(torch, config["dtype"])
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child_name, cls(**config))
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path} has tensors the model does not: {unexpected[:3]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()  # names saved once (tied weights) point at the loaded tensor again
    current = model.state_dict()
    loaded = {current[name].data_ptr() for name in state}
    untied = [name for name in missing if current[name].data_ptr() not in loaded]
    if untied:
        raise ValueError(f"{path} lacks tensors the model needs: {untied[:3]}")
    return model
