"""Layer-by-layer calibration: catch what enters the first block, then feed blocks one at a time. Used in 06.

GPTQ and AWQ quantize a model one block (decoder layer) at a time. Block k is calibrated on the
outputs of blocks 0..k-1 *after* they were quantized, so each block learns to compensate for the
errors made before it, and only one block's activations are ever held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .threads import one_thread

__all__ = ["BlockInputs", "decoder_blocks", "capture_block_inputs", "run_block", "quantize_blocks_sequentially",
           "linear_layers"]


@dataclass
class BlockInputs:
    """What one block receives for each calibration batch: the hidden states and the other keyword arguments."""

    hidden: list[torch.Tensor]  # one (batch, tokens, features) tensor per calibration batch
    kwargs: list[dict] = field(default_factory=list)  # attention mask, rotary embeddings, ... per batch

    def __post_init__(self) -> None:
        if not self.hidden:
            raise ValueError("no calibration data: pass at least one calibration window")
        if not self.kwargs:
            self.kwargs = [{} for _ in self.hidden]

    @property
    def tokens(self) -> int:
        """Number of calibration vectors (batch x positions) in all batches."""
        return sum(h[..., 0].numel() for h in self.hidden)


class _Caught(Exception):
    """Raised by the hook on the first block: the rest of the model need not run."""


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The repeated blocks of a transformers decoder-only LM (model.model.layers), with a clear error otherwise."""
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise ValueError(f"{type(model).__name__} has no model.layers list of decoder blocks; pass blocks explicitly")
    return blocks


@torch.no_grad()
def capture_block_inputs(model: nn.Module, windows: torch.Tensor, batch_size: int = 4) -> BlockInputs:
    """Run the model on calibration windows just far enough to record what enters its first decoder block."""
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.shape[0] == 0:
        raise ValueError("no calibration data: windows must be a non-empty (n, tokens) tensor of token ids, "
                         f"got {getattr(windows, 'shape', type(windows).__name__)}")
    first = decoder_blocks(model)[0]
    hidden_states: list[torch.Tensor] = []
    keyword_args: list[dict] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        hidden_states.append(hidden.detach())
        keyword_args.append(dict(kwargs))
        raise _Caught

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, windows.shape[0], batch_size):
            try:
                model(input_ids=windows[start:start + batch_size], use_cache=False)
            except _Caught:
                pass
    finally:
        handle.remove()
    return BlockInputs(hidden=hidden_states, kwargs=keyword_args)


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs) -> BlockInputs:
    """The block's outputs for every calibration batch: the next block's inputs."""
    outputs = []
    for hidden, kwargs in zip(inputs.hidden, inputs.kwargs):
        out = block(hidden, **kwargs)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return BlockInputs(hidden=outputs, kwargs=inputs.kwargs)


def linear_layers(module: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Linear]:
    """The nn.Linear layers inside module, by their name relative to it, minus names ending in `exclude`."""
    return {name: child for name, child in module.named_modules()
            if isinstance(child, nn.Linear) and not any(name == e or name.endswith("." + e) for e in exclude)}


def quantize_blocks_sequentially(blocks: list[nn.Module] | nn.ModuleList, inputs: BlockInputs,
                                 quantize_block: Callable[[int, nn.Module, BlockInputs], dict],
                                 progress: bool = False, desc: str = "blocks",
                                 next_inputs: str = "quantized") -> dict[str, object]:
    """For each block in order: quantize_block(index, block, its inputs), then compute the next block's inputs.

    next_inputs: "quantized" (GPTQ: the quantized block's outputs, so later blocks compensate) or "original"
    (llm-awq: the outputs of the block before it was changed, i.e. the full-precision model's activations).
    Returns the merged per-layer results, keyed "blocks.{index}.{layer name}".
    """
    if next_inputs not in ("quantized", "original"):
        raise ValueError(f"next_inputs must be 'quantized' or 'original', got {next_inputs!r}")
    results: dict[str, object] = {}
    with one_thread():  # searches of many small ops: see helper/threads.py
        for index, block in enumerate(tqdm(list(blocks), desc=desc, disable=not progress, leave=False)):
            outputs = run_block(block, inputs) if next_inputs == "original" else None
            for name, value in quantize_block(index, block, inputs).items():
                results[f"blocks.{index}.{name}"] = value
            inputs = outputs if outputs is not None else run_block(block, inputs)
    return results

