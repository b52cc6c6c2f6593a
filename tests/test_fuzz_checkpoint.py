"""Fuzzing load_quantized with a real saved checkpoint: truncations, byte flips, header and metadata overwrites.

A quantized checkpoint is untrusted input. Every mutated file must either be refused with a ValueError that
names the file, or load into a model that is still the same architecture (only its nn.Linear layers swapped
for the course's quantized classes, no new submodules) and computes finite outputs; never another
exception, never memory growth beyond the file's size (peak resident memory on every try, tracemalloc on
every 10th). Seeded and bounded; each test asserts how many tries it made (TRIES).
"""

from __future__ import annotations

import json
import random
import re
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from helper.layers import W2A16Linear, W4A16Linear, W8A16Linear, load_quantized, replace_linear, save_quantized

TRIES = {"truncations": 100, "flips": 200, "header_fields": 250, "layer_fields": 250, "hypothesis": 100}  # 900
SLACK = 16 << 20  # the interpreter's own small objects; nothing may scale with a size the file declares
TRACE_EVERY = 10
_CLASSES = (nn.Linear, W8A16Linear, W4A16Linear, W2A16Linear)
_ODD_VALUES = (0, -1, 1, 3, 7, 10**12, 2**63, 2.5, float("inf"), "False", "True", "", None, [], {}, [64], True,
               False, "float64", "__class__", "W4A16Linear", "W8A16Linear", "Sequential", "bfloat16", "int8")
_ODD_NAMES = ("", "0.weight", "1", "extra", "__class__", "0.__dict__", "0.0", "..", "2.bias", "3", "0 ")
_DTYPES = ("F32", "F16", "BF16", "F64", "I8", "U8", "I32", "I64", "BOOL", "F8_E4M3", "XYZ")


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8, bias=False),
                         nn.ReLU(), nn.Linear(8, 4))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The bytes of a real checkpoint: W4A16 symmetric, W4A16 scale+min, W8A16 without bias, and a plain Linear."""
    model = _model()
    replace_linear(model, W4A16Linear, exclude=("2", "4", "6"), group_size=32)
    replace_linear(model, W4A16Linear, exclude=("0", "4", "6"), group_size=16, symmetric=False)
    replace_linear(model, W8A16Linear, exclude=("0", "2", "6"))
    path = save_quantized(model, tmp_path_factory.mktemp("fuzz_ckpt") / "good.safetensors")
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    load_quantized(_model(1), path)  # the unmutated file loads
    return data, header, data[8 + length:]


def _status_kb(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _pack(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _try(path: Path, data: bytes, what: str, failures: list, outcomes: dict, trace: bool) -> None:
    """Refused with a ValueError naming the file, or loaded into the same architecture with finite outputs."""
    path.write_bytes(data)
    size = len(data)
    model = _model(1)
    names_before = {name for name, _ in model.named_modules()}
    rss = _status_kb("VmRSS") if _reset_peak_rss() else None
    if trace:
        tracemalloc.start()
    try:
        try:
            load_quantized(model, path)
        except ValueError as error:
            assert str(path) in str(error), f"the error does not name the file: {error}"
            outcomes["refused"] += 1
            return
        assert {name for name, _ in model.named_modules()} == names_before, "the module tree changed"
        assert all(type(module) in _CLASSES for module in model if not isinstance(module, nn.ReLU))
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn(3, 64))).all(), "a loaded model computes NaN or Inf"
        outcomes["loaded"] += 1
    except Exception as error:  # noqa: BLE001 - anything else is what we are looking for
        failures.append(f"{what}: {type(error).__name__}: {str(error)[:200]}")
    finally:
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if peak > size + SLACK:
                failures.append(f"{what}: Python allocations peaked at {peak:,} bytes for a file of {size:,}")
        if rss is not None and (_status_kb("VmHWM") - rss) * 1024 > size + SLACK:
            failures.append(f"{what}: resident memory grew by {(_status_kb('VmHWM') - rss) * 1024:,} bytes")


def _run(tries: list[tuple[str, bytes]], tmp_path: Path, name: str) -> dict:
    failures: list[str] = []
    outcomes = {"refused": 0, "loaded": 0}
    for index, (what, data) in enumerate(tries):
        _try(tmp_path / f"{name}.safetensors", data, what, failures, outcomes, index % TRACE_EVERY == 0)
    assert len(tries) == TRIES[name]
    assert not failures, "\n".join(failures[:10])
    print(f"checkpoint {name}: {len(tries)} tries, {outcomes}")
    return outcomes


def test_truncations(saved, tmp_path):
    data, *_ = saved
    rng = random.Random(25)
    cuts = sorted(rng.randrange(0, len(data)) for _ in range(TRIES["truncations"]))
    outcomes = _run([(f"cut at byte {cut:,}", data[:cut]) for cut in cuts], tmp_path, "truncations")
    assert outcomes["loaded"] == 0  # safetensors checks that the data ends where the header says


def test_byte_flips(saved, tmp_path):
    data, *_ = saved
    rng = random.Random(26)
    tries = []
    for index in range(TRIES["flips"]):
        mutated = bytearray(data)
        header_end = 8 + struct.unpack("<Q", data[:8])[0]
        low, high = (0, header_end) if index % 2 else (header_end, len(data))  # half in the JSON, half in the data
        where = [rng.randrange(low, high) for _ in range(1 + index % 3)]
        for position in where:
            mutated[position] = rng.randrange(256)
        tries.append((f"bytes {where} changed", bytes(mutated)))
    outcomes = _run(tries, tmp_path, "flips")
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0


def test_header_field_overwrites(saved, tmp_path):
    """Overwrite a tensor's dtype, shape or data_offsets, or drop / rename / add a tensor entry."""
    data, header, body = saved
    rng = random.Random(27)
    names = [key for key in header if key != "__metadata__"]
    tries = []
    for _ in range(TRIES["header_fields"]):
        mutated = json.loads(json.dumps(header))
        name = rng.choice(names)
        entry = mutated[name]
        kind = rng.choice(["dtype", "shape", "offsets", "drop", "rename", "add"])
        if kind == "dtype":
            entry["dtype"] = rng.choice(_DTYPES)
        elif kind == "shape":
            shape = list(entry["shape"]) or [1]
            shape[rng.randrange(len(shape))] = rng.choice([0, 1, 2, 3, 31, 32, 2**31, 2**40, 10**12])
            entry["shape"] = shape if rng.random() < 0.8 else shape + [rng.choice([1, 2, 10**9])]
        elif kind == "offsets":
            start, end = entry["data_offsets"]
            entry["data_offsets"] = rng.choice([[start, end + 4], [start - 4, end], [0, end - start],
                                                [start, 2**62], [end, start]])
        elif kind == "drop":
            del mutated[name]
        elif kind == "rename":
            mutated[rng.choice(_ODD_NAMES) + rng.choice(["", ".scales", ".int8_weights", ".weight"])] = \
                mutated.pop(name)
        else:
            mutated[f"{name}.extra"] = dict(entry)
        tries.append((f"{kind} of {name}", _pack(mutated, body)))
    outcomes = _run(tries, tmp_path, "header_fields")
    assert outcomes["refused"] > 0


def test_layer_metadata_overwrites(saved, tmp_path):
    """Overwrite the quantized_layers JSON: values, names, missing or extra keys, corrupt JSON."""
    data, header, body = saved
    rng = random.Random(28)
    layers = json.loads(header["__metadata__"]["quantized_layers"])
    tries = []
    for _ in range(TRIES["layer_fields"]):
        mutated_layers = json.loads(json.dumps(layers))
        name = rng.choice(list(mutated_layers))
        config = mutated_layers[name]
        kind = rng.choice(["value", "value", "rename", "drop-key", "add-key", "drop-layer", "corrupt"])
        if kind == "value":
            config[rng.choice(list(config))] = rng.choice(_ODD_VALUES)
        elif kind == "rename":
            mutated_layers[rng.choice(_ODD_NAMES)] = mutated_layers.pop(name)
        elif kind == "drop-key":
            del config[rng.choice(list(config))]
        elif kind == "add-key":
            config[rng.choice(["bits", "class_", "__init__", "group_size"])] = rng.choice(_ODD_VALUES)
        elif kind == "drop-layer":
            del mutated_layers[name]
        text = json.dumps(mutated_layers)
        if kind == "corrupt":
            text = text[:rng.randrange(len(text))]
        mutated = json.loads(json.dumps(header))
        mutated["__metadata__"]["quantized_layers"] = text
        tries.append((f"{kind} in layer {name}: {text[:120]}", _pack(mutated, body)))
    outcomes = _run(tries, tmp_path, "layer_fields")
    assert outcomes["refused"] > 0


@pytest.fixture(scope="module")
def hypothesis_state():
    return {"tries": 0, "failures": [], "outcomes": {"refused": 0, "loaded": 0}}


@settings(max_examples=TRIES["hypothesis"], derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=4))
def test_hypothesis_byte_changes(saved, tmp_path_factory, hypothesis_state, changes):
    data, *_ = saved
    mutated = bytearray(data)
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    for position, byte in changes:
        mutated[position % header_end] = byte  # the JSON header, where the structure lives
    hypothesis_state["tries"] += 1
    path = tmp_path_factory.getbasetemp() / "hypothesis.safetensors"
    _try(path, bytes(mutated), f"hypothesis {changes}", hypothesis_state["failures"], hypothesis_state["outcomes"],
         hypothesis_state["tries"] % TRACE_EVERY == 1)
    assert not hypothesis_state["failures"], hypothesis_state["failures"][-1]


def test_hypothesis_made_its_tries(hypothesis_state):
    if not hypothesis_state["tries"]:
        pytest.skip("run together with test_hypothesis_byte_changes")
    assert hypothesis_state["tries"] >= TRIES["hypothesis"] // 2
    print(f"checkpoint hypothesis: {hypothesis_state['tries']} tries, {hypothesis_state['outcomes']}")
