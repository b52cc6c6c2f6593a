"""Quantization-aware training in miniature: fake-quantized linear layers trained with the STE. Taught in 03."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .linear_quant import QuantScheme, fake_quantize, quantize_tensor

__all__ = ["make_spirals", "make_mlp", "train_classifier", "accuracy", "FakeQuantLinear", "to_fake_quant",
           "ptq_weights"]


def make_spirals(n_per_class: int = 300, classes: int = 3, noise: float = 0.15,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): interleaved 2-D spirals, one arm per class; a task a small MLP learns but only with fine weights."""
    if n_per_class < 1 or classes < 2:
        raise ValueError(f"need n_per_class >= 1 and classes >= 2, got {n_per_class}, {classes}")
    generator = torch.Generator().manual_seed(seed)
    radius = torch.linspace(0.05, 1.0, n_per_class)
    xs, ys = [], []
    for label in range(classes):
        angle = radius * 4.0 + label * 2 * math.pi / classes + noise * torch.randn(n_per_class, generator=generator)
        xs.append(torch.stack([radius * torch.sin(angle), radius * torch.cos(angle)], dim=1))
        ys.append(torch.full((n_per_class,), label))
    return torch.cat(xs), torch.cat(ys)


def make_mlp(hidden: int = 64, classes: int = 3, seed: int = 0) -> nn.Sequential:
    """2 -> hidden -> hidden -> classes MLP with ReLU, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, classes))


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 500,
                     lr: float = 1e-2) -> list[float]:
    """Full-batch Adam on cross-entropy; returns the loss curve. Deterministic for a given model and data."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correctly classified points."""
    return (model(x).argmax(dim=-1) == y).float().mean().item()


class FakeQuantLinear(nn.Linear):
    """nn.Linear whose weight is fake-quantized on every forward: the network trains for its quantized self."""

    def __init__(self, in_features: int, out_features: int, scheme: QuantScheme, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.scheme = scheme

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F.linear with the weight rounded to its grid (straight-through gradient)."""
        return F.linear(x, fake_quantize(self.weight, self.scheme), self.bias)


def to_fake_quant(model: nn.Module, scheme: QuantScheme) -> nn.Module:
    """A copy of model with every nn.Linear replaced by a FakeQuantLinear holding the same weights."""
    model = copy.deepcopy(model)
    for name, child in model.named_children():
        if isinstance(child, nn.Linear):
            fq = FakeQuantLinear(child.in_features, child.out_features, scheme, child.bias is not None)
            fq.load_state_dict(child.state_dict())
            setattr(model, name, fq)
        else:
            setattr(model, name, to_fake_quant(child, scheme))
    return model


@torch.no_grad()
def ptq_weights(model: nn.Module, scheme: QuantScheme) -> nn.Module:
    """Post-training quantization: a copy whose linear weights are replaced by their dequantized codes."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(quantize_tensor(module.weight, scheme).dequantize())
    return model
