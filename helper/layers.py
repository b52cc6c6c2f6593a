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
from .validation import InputTypeError, check_bool, check_choice, check_int_in_range

__all__ = ["W8A16Linear", "WnA16Linear", "W4A16Linear", "W2A16Linear", "fit_group_size", "replace_linear",
           "save_quantized", "load_quantized"]


_MAX_FEATURES = 1 << 24  # no real layer is wider; a bound keeps odd sizes from allocating terabytes
_LAYER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _check_layer_args(in_features: object, out_features: object, bias: object,
                      dtype: object) -> tuple[int, int, bool, torch.dtype]:
    in_features = check_int_in_range(in_features, "in_features", 1, _MAX_FEATURES)
    out_features = check_int_in_range(out_features, "out_features", 1, _MAX_FEATURES)
    dtype = check_choice(dtype, "dtype", tuple(_LAYER_DTYPES.values()))
    return in_features, out_features, check_bool(bias, "bias"), dtype


def _check_linear(linear: object) -> None:
    if not isinstance(linear, nn.Linear):
        raise InputTypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")


def _check_activations(x: object, in_features: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():  # int activations would turn the scales into integers (mostly 0)
        raise InputTypeError(f"x must be floating-point activations (16 or 32 bits), got {x.dtype}; "
                             f"convert with x.float()")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must end in {in_features} features, got shape {tuple(x.shape)}")


class W8A16Linear(nn.Module):
    """int8 weights with one scale per output channel (symmetric); activations stay in 16 or 32 bits."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        in_features, out_features, bias, dtype = _check_layer_args(in_features, out_features, bias, dtype)
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("int8_weights", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype | None = None) -> "W8A16Linear":
        """Quantize an existing nn.Linear: w = int8_weights * scales[:, None], scale = max|row| / 127."""
        _check_linear(linear)
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
        _check_activations(x, self.in_features)
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
        in_features, out_features, bias, dtype = _check_layer_args(in_features, out_features, bias, dtype)
        group_size = check_int_in_range(group_size, "group_size", high=_MAX_FEATURES)
        symmetric = check_bool(symmetric, "symmetric")
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
        _check_linear(linear)
        dtype = dtype or linear.weight.dtype
        if check_bool(adapt_group_size, "adapt_group_size"):
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
        _check_activations(x, self.in_features)
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
    in_features = check_int_in_range(in_features, "in_features", 1, _MAX_FEATURES)
    preferred = check_int_in_range(preferred, "preferred", 1, _MAX_FEATURES)
    step = check_int_in_range(step, "step", 1, _MAX_FEATURES)
    group_size = preferred
    if group_size > in_features and group_size > step:  # sizes above in_features cannot divide it: skip them
        group_size -= min(-(-(group_size - in_features) // step), (group_size - 1) // step) * step
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
    check_bool(progress, "progress")
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


# What a checkpoint may describe: these classes, with exactly these keys, and these dtypes (see the README).
_CONFIG_KEYS = {"W8A16Linear": {"class", "in_features", "out_features", "bias", "dtype"},
                "W4A16Linear": {"class", "in_features", "out_features", "bias", "dtype", "group_size", "symmetric"},
                "W2A16Linear": {"class", "in_features", "out_features", "bias", "dtype", "group_size", "symmetric"}}
_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def _expected_tensors(cls: type[nn.Module], config: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """The tensors (shape, safetensors dtype) a layer of this configuration stores."""
    out_features, in_features, dtype = config["out_features"], config["in_features"], _SAFETENSORS_DTYPES[
        config["dtype"]]
    if cls is W8A16Linear:
        tensors = {"int8_weights": ((out_features, in_features), "I8"), "scales": ((out_features,), dtype)}
    else:
        groups = in_features // config["group_size"]
        tensors = {"packed_weights": ((out_features, packed_length(in_features, cls.bits)), "U8"),
                   "scales": ((out_features, groups), dtype)}
        if not config["symmetric"]:
            tensors["minimums"] = ((out_features, groups), dtype)
    if config["bias"]:
        tensors["bias"] = ((out_features,), dtype)
    return tensors


def _layer_from_config(name: str, config: object, module: nn.Module | None,
                       tensors: dict[str, tuple[tuple[int, ...], str]], path: Path) -> nn.Module:
    """A fresh quantized layer for one metadata entry, after checking it against the model and the file."""
    where = f"{path}: layer {name!r}"
    if module is None:
        raise ValueError(f"{where} does not exist in the model (is it the same architecture?)")
    if not isinstance(module, (nn.Linear, *_LAYER_CLASSES.values())):
        raise ValueError(f"{where} is a {type(module).__name__} in the model; only nn.Linear layers are replaced")
    if (not isinstance(config, dict) or not isinstance(config.get("class"), str)
            or config["class"] not in _CONFIG_KEYS):
        shown = config.get("class") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{where}: class must be one of {', '.join(_CONFIG_KEYS)}, got {shown!r:.60}")
    cls = _LAYER_CLASSES[config["class"]]
    if set(config) != _CONFIG_KEYS[config["class"]]:
        raise ValueError(f"{where}: a {config['class']} entry has keys {sorted(_CONFIG_KEYS[config['class']])}, "
                         f"got {sorted(map(str, config))[:8]}")
    # A dtype comes from the allow-list, never from getattr(torch, <a string from the file>).
    if not isinstance(config["dtype"], str) or config["dtype"] not in _LAYER_DTYPES:
        raise ValueError(f"{where}: dtype must be one of {', '.join(_LAYER_DTYPES)}, got {config['dtype']!r:.40}")
    try:
        kwargs = {key: value for key, value in config.items() if key != "class"}
        kwargs["dtype"] = _LAYER_DTYPES[config["dtype"]]
        if (kwargs["in_features"], kwargs["out_features"]) != (module.in_features, module.out_features):
            raise ValueError(f"is {kwargs['in_features']} -> {kwargs['out_features']} in the file but "
                             f"{module.in_features} -> {module.out_features} in the model")
        module_bias = getattr(module, "bias", None) is not None
        if check_bool(kwargs["bias"], "bias") is not module_bias:
            raise ValueError(f"has bias={kwargs['bias']!r} in the file, {module_bias} in the model")
        if cls is not W8A16Linear:
            check_int_in_range(kwargs["group_size"], "group_size", 1, module.in_features)
            if module.in_features % kwargs["group_size"]:
                raise ValueError(f"has group_size {kwargs['group_size']}, which does not divide in_features "
                                 f"{module.in_features}")
            check_bool(kwargs["symmetric"], "symmetric")
        expected = _expected_tensors(cls, config)
    except (ValueError, TypeError, ZeroDivisionError) as error:
        raise ValueError(f"{where} {error}") from None
    for tensor_name, (shape, dtype) in expected.items():
        key = f"{name}.{tensor_name}"
        if key not in tensors:
            raise ValueError(f"{path} lacks tensor {key!r} that its metadata describes")
        if tensors[key] != (shape, dtype):
            raise ValueError(f"{path}: tensor {key!r} is {tensors[key][1]} {list(tensors[key][0])}, but its "
                             f"metadata describes {dtype} {list(shape)}")
    try:
        return cls(**kwargs)  # sizes now agree with the model and with the file's own tensors
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def load_quantized(model: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild the quantized layers described in the file on `model` (same architecture), then load tensors.

    The file is untrusted input. Only safetensors is read: no pickle, so loading a file never runs code.
    Its metadata may only describe W8A16Linear / W4A16Linear / W2A16Linear layers with float32/16 or
    bfloat16 scales, each at the name of an nn.Linear of `model` with the same sizes; every tensor the
    metadata implies must be in the file with that exact shape and dtype, and every other tensor must be
    one of the model's, with the model's shape. Anything else is a ValueError naming the file, and the
    model is left untouched.
    """
    from safetensors import safe_open

    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, Path)):
        raise InputTypeError(f"path must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no quantized model at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: (tuple(handle.get_slice(key).get_shape()), handle.get_slice(key).get_dtype())
                       for key in handle.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError) on bad headers
        raise ValueError(f"{path} is not a readable safetensors file: {str(error)[:200]}") from None
    if "quantized_layers" not in metadata:
        raise ValueError(f"{path} was not written by save_quantized (no 'quantized_layers' metadata)")
    try:
        described = json.loads(metadata["quantized_layers"])
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path}: its 'quantized_layers' metadata is not valid JSON ({str(error)[:100]})") from None
    if not isinstance(described, dict) or not described:
        raise ValueError(f"{path}: 'quantized_layers' must map layer names to layer configurations, got "
                         f"{type(described).__name__}")
    modules = dict(model.named_modules(remove_duplicate=False))
    modules.pop("", None)  # the model itself is never replaced
    layers = {name: _layer_from_config(name, config, modules.get(name), tensors, path)
              for name, config in described.items()}
    # Every other tensor must be one the model has, with the model's shape (checked before anything changes).
    current = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    for name, layer in layers.items():
        current = {key: shape for key, shape in current.items() if not key.startswith(name + ".")}
        current.update({f"{name}.{key}": tuple(t.shape) for key, t in layer.state_dict().items()})
    unexpected = [key for key in tensors if key not in current]
    if unexpected:
        raise ValueError(f"{path} has tensors the model does not: {unexpected[:3]}")
    wrong = [f"{key} {list(tensors[key][0])} (model {list(current[key])})" for key in tensors
             if tensors[key][0] != current[key]]
    if wrong:
        raise ValueError(f"{path} has tensors of the wrong shape for this model: {wrong[:3]}")
    state = load_file(str(path))  # sizes are the file's own: never more than the file holds
    corrupt = [key for key, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if corrupt:
        raise ValueError(f"{path} has tensors with NaN or Inf values (corrupt or not a trained model): {corrupt[:3]}")
    for name, layer in layers.items():
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child_name, layer)
    missing, _ = model.load_state_dict(state, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()  # names saved once (tied weights) point at the loaded tensor again
    current_state = model.state_dict()
    loaded = {current_state[name].data_ptr() for name in state}
    untied = [name for name in missing if current_state[name].data_ptr() not in loaded]
    if untied:
        raise ValueError(f"{path} lacks tensors the model needs: {untied[:3]}")
    return model
