from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helper
from helper.gguf_io import (BLOCK_FORMATS, GGUFFormatError, dequantize_q4_0, dequantize_q4_1, dequantize_q8_0,
                            k_quant_bits_per_weight, load_tensor, quantize_q4_0, quantize_q8_0, read_gguf,
                            split_block, raw_tensor_bytes)

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType, GGUFReader, quants  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402


@pytest.fixture(scope="module")
def real():
    path = helper.smollm2_gguf_path()
    return read_gguf(path), GGUFReader(path)


def test_the_real_file_has_the_documented_tensors(real):
    ours, _ = real
    assert ours.version == 3 and ours.alignment == 32
    assert Counter(t.type_name for t in ours.tensors) == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert ours.tensor("token_embd.weight").type_name == "Q8_0"
    assert ours.tensor("blk.0.attn_q.weight").shape == (576, 576)
    assert ours.tensor("blk.0.attn_q.weight").n_bytes == 576 * 576 // 32 * 20
    assert ours.metadata["general.architecture"] == "llama" and ours.metadata["llama.block_count"] == 30
    with pytest.raises(KeyError, match="no tensor 'nope'"):
        ours.tensor("nope")


def test_reader_agrees_with_gguf_reader(real):
    ours, reference = real
    assert [t.name for t in ours.tensors] == [t.name for t in reference.tensors]
    for mine, theirs in zip(ours.tensors, reference.tensors):
        assert (mine.offset, mine.n_bytes, mine.type_name) == (theirs.data_offset, theirs.n_bytes, theirs.tensor_type.name)
        assert mine.ne == tuple(int(n) for n in theirs.shape)
    fields = {name: field for name, field in reference.fields.items() if not name.startswith("GGUF.")}
    assert list(ours.metadata) == list(fields)
    for name, field in fields.items():
        assert ours.metadata[name] == pytest.approx(field.contents()), name
    name = "blk.3.ffn_down.weight"
    assert np.array_equal(raw_tensor_bytes(ours, name), next(t for t in reference.tensors if t.name == name).data.reshape(-1))


def test_every_quantized_tensor_dequantizes_bit_exactly(real):
    ours, reference = real
    for mine, theirs in zip(ours.tensors, reference.tensors):
        if mine.type_name in ("Q4_1", "Q8_0"):
            expected = quants.dequantize(theirs.data, theirs.tensor_type).astype(np.float32).reshape(-1)
            got = load_tensor(ours, mine.name).numpy().reshape(-1)
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), mine.name


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.sampled_from([1e-6, 1.0, 1e4]), st.integers(0, 2**31 - 1),
       st.sampled_from(["normal", "zeros", "equal", "negative"]))
def test_quantizers_are_byte_identical_to_gguf(rows, blocks, magnitude, seed, kind):
    x = np.random.default_rng(seed).standard_normal((rows, 32 * blocks)).astype(np.float32) * magnitude
    if kind == "zeros":
        x[:, :32] = 0
    elif kind == "equal":
        x[:, :32] = np.float32(magnitude)
    elif kind == "negative":
        x = -np.abs(x)
    assert np.array_equal(quantize_q8_0(x), quants.quantize(x, GGMLQuantizationType.Q8_0).reshape(-1))
    assert np.array_equal(quantize_q4_0(x), quants.quantize(x, GGMLQuantizationType.Q4_0).reshape(-1))
    assert np.array_equal(dequantize_q8_0(quantize_q8_0(x)),
                          quants.dequantize(quants.quantize(x, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0).reshape(-1))
    assert np.array_equal(dequantize_q4_0(quantize_q4_0(x)),
                          quants.dequantize(quants.quantize(x, GGMLQuantizationType.Q4_0), GGMLQuantizationType.Q4_0).reshape(-1))


def test_quantizers_on_real_weights(real):
    ours, _ = real
    w = load_tensor(ours, "blk.0.ffn_up.weight").numpy()
    assert np.array_equal(quantize_q8_0(w), quants.quantize(w, GGMLQuantizationType.Q8_0).reshape(-1))
    assert np.array_equal(quantize_q4_0(w), quants.quantize(w, GGMLQuantizationType.Q4_0).reshape(-1))


def test_one_q4_1_block_by_hand(real):
    ours, _ = real
    block = raw_tensor_bytes(ours, "blk.0.attn_q.weight")[:20]
    fields = split_block(block, "Q4_1")
    expected = np.array(fields["codes"], dtype=np.float32) * np.float32(fields["d"]) + np.float32(fields["m"])
    assert np.array_equal(fields["values"], expected) and len(fields["codes"]) == 32
    assert fields["codes"][:16] == [int(b) & 15 for b in block[4:20]]  # low nibbles hold weights 0..15
    assert np.array_equal(dequantize_q4_1(block), fields["values"])


def test_bits_per_weight_from_the_layouts():
    assert {n: k_quant_bits_per_weight(n) for n in ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K", "Q2_K", "Q3_K")} == {
        "Q8_0": 8.5, "Q4_0": 4.5, "Q4_1": 5.0, "Q4_K": 4.5, "Q5_K": 5.5, "Q6_K": 6.5625, "Q2_K": 2.625, "Q3_K": 3.4375}
    for name, layout in BLOCK_FORMATS.items():
        assert GGML_QUANT_SIZES[GGMLQuantizationType[name]] == layout, name
    with pytest.raises(ValueError, match="unknown type 'Q9_9'"):
        k_quant_bits_per_weight("Q9_9")


def test_bad_values_and_bytes_get_clear_errors():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8_0(np.ones((2, 48), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_q4_0(np.full(32, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="not a whole number of Q4_1 blocks"):
        dequantize_q4_1(np.zeros(30, dtype=np.uint8))
    with pytest.raises(ValueError, match="split_block knows"):
        split_block(np.zeros(34, dtype=np.uint8), "Q6_K")


def _write(tmp_path, data: bytes):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("cut, message", [
    (2, "file truncated: magic"),
    (12, "file truncated: tensor count"),
    (200, "file truncated"),
    (1_500_000, "file truncated"),
    (3_000_000, r"file truncated: tensor .* ends at byte"),
])
def test_truncated_files_fail_clearly(tmp_path, cut, message):
    with open(helper.smollm2_gguf_path(), "rb") as handle:
        head = handle.read(cut)
    with pytest.raises(GGUFFormatError, match=message):
        read_gguf(_write(tmp_path, head))


def test_corrupt_headers_fail_clearly(tmp_path):
    with open(helper.smollm2_gguf_path(), "rb") as handle:
        head = bytearray(handle.read(2_000_000))
    with pytest.raises(GGUFFormatError, match=r"not a GGUF file: magic b'GGML'"):
        read_gguf(_write(tmp_path, b"GGML" + bytes(head[4:])))
    with pytest.raises(GGUFFormatError, match="unsupported GGUF version 7"):
        read_gguf(_write(tmp_path, bytes(head[:4]) + (7).to_bytes(4, "little") + bytes(head[8:])))
    with pytest.raises(GGUFFormatError, match="1,152,921,504,606,846,976 tensors and 33 metadata entries cannot fit"):
        read_gguf(_write(tmp_path, bytes(head[:8]) + (2**60).to_bytes(8, "little") + bytes(head[16:])))
    huge_key = bytes(head[:24]) + (2**60).to_bytes(8, "little") + bytes(head[32:])
    with pytest.raises(GGUFFormatError, match="string length 1,152,921,504,606,846,976 at byte 24 exceeds"):
        read_gguf(_write(tmp_path, huge_key))
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        read_gguf(tmp_path / "missing.gguf")


@pytest.fixture(scope="module")
def written(real, tmp_path_factory):
    ours, _ = real
    return helper.write_gguf(ours, tmp_path_factory.mktemp("gguf") / "SmolLM2-135M-Instruct.Q8_0.gguf", "Q8_0")


def test_written_q8_0_file_is_valid_gguf_with_our_blocks(real, written):
    ours, _ = real
    reference = GGUFReader(written.path)
    assert Counter(t.type_name for t in written.tensors) == {"Q8_0": 211, "F32": 61}
    assert [t.name for t in written.tensors] == [t.name for t in ours.tensors]
    assert [t.tensor_type.name for t in reference.tensors] == [t.type_name for t in written.tensors]
    assert written.metadata["general.file_type"] == 7  # MOSTLY_Q8_0
    assert {k: v for k, v in written.metadata.items() if k != "general.file_type"} == {
        k: v for k, v in ours.metadata.items() if k != "general.file_type"}
    assert written.metadata_types == ours.metadata_types
    # 8.5 bits per quantized weight: 135 M weights in about 145 MB instead of the Q4_1 file's 98 MB
    assert written.tensor("blk.0.ffn_up.weight").n_bytes == 1536 * 576 // 32 * 34
    for name in ("blk.7.attn_k.weight", "output_norm.weight", "token_embd.weight"):
        source = load_tensor(ours, name).numpy()
        info = written.tensor(name)
        if info.type_name == "Q8_0":  # the blocks gguf's own quantizer would write for the same values
            expected = quants.quantize(source, GGMLQuantizationType.Q8_0).reshape(-1)
            assert np.array_equal(raw_tensor_bytes(written, name), expected), name
            assert np.abs(load_tensor(written, name).numpy() - source).max() <= np.abs(source).max() / 254 * 1.01
        else:
            assert np.array_equal(load_tensor(written, name).numpy(), source)


def test_written_file_loads_in_transformers_with_the_same_predictions(written):
    import torch

    base, tokenizer = helper.load_smollm2()
    reloaded = helper.load_gguf_model(written.path)
    assert isinstance(reloaded, torch.nn.Module) and not reloaded.training
    windows = helper.token_windows(tokenizer, n_windows=1, window=128)
    agreement = helper.next_token_agreement(base, reloaded, windows)
    # Q8_0 of the Q4_1 weights is nearly lossless: the same next token almost everywhere, tiny KL
    assert agreement["top1"] > 0.9 and agreement["kl"] < 0.01, agreement


def test_write_gguf_rejects_unknown_types_and_missing_files(real, tmp_path):
    with pytest.raises(ValueError, match="write_gguf quantizes to Q8_0, Q4_0, not 'Q4_K'"):
        helper.write_gguf(real[0], tmp_path / "x.gguf", "Q4_K")
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        helper.load_gguf_model(tmp_path / "missing.gguf")


# Hand-built headers for each way a file can lie (the real file's own fuzzing is in test_fuzz_gguf.py).
def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(8, "little") + raw


def _gguf(kv: bytes = b"", kv_count: int = 0, tensors: list[tuple] = (), data: bytes = b"", alignment: int = 32):
    """A GGUF v3 file: metadata entries (already encoded), tensors (name, ne, type id, offset), data."""
    head = b"GGUF" + (3).to_bytes(4, "little") + len(tensors).to_bytes(8, "little") + kv_count.to_bytes(8, "little")
    head += kv
    for name, ne, type_id, offset in tensors:
        head += _string(name) + len(ne).to_bytes(4, "little") + b"".join(n.to_bytes(8, "little") for n in ne)
        head += type_id.to_bytes(4, "little") + offset.to_bytes(8, "little")
    head += b"\0" * (-len(head) % alignment)
    return head + data


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + (4).to_bytes(4, "little") + value.to_bytes(4, "little")


def test_a_hand_built_file_parses(tmp_path):
    parsed = read_gguf(_write(tmp_path, _gguf(_kv_u32("general.alignment", 32), 1, [("w", (32,), 0, 0)],
                                               b"\0" * 128)))
    assert parsed.alignment == 32 and parsed.tensors[0].n_bytes == 128


@pytest.mark.parametrize("build, message", [
    (lambda: _gguf(tensors=[("w", (2**32, 2**32), 0, 0)], data=b"\0" * 64),
     "tensor w ends at byte 73,786,976,294,838,206,560"),  # 2^64 x 4 bytes + data start
    (lambda: _gguf(tensors=[("w", (2**32, 2**32, 2**32, 2**32), 0, 0)], data=b"\0" * 64), "file truncated: tensor w"),
    (lambda: _gguf(_kv_u32("general.alignment", 0), 1), r"general.alignment must be a power of two .* got 0"),
    (lambda: _gguf(_kv_u32("general.alignment", 3), 1), "general.alignment must be a power of two .* got 3"),
    (lambda: _gguf(_kv_u32("general.alignment", 2**31), 1), "general.alignment must be a power of two"),
    (lambda: _gguf(_string("general.alignment") + (8).to_bytes(4, "little") + _string("abc"), 1),
     "general.alignment must be a power of two .* got 'abc'"),
    (lambda: _gguf(_string("k") + (9).to_bytes(4, "little")  # an array of an array of ... 5000 deep (60 kB)
                   + b"".join((9).to_bytes(4, "little") + (1).to_bytes(8, "little") for _ in range(5000)), 1),
     "arrays nested more than 8 deep"),
    (lambda: _gguf(_string("k") + (9).to_bytes(4, "little") + (77).to_bytes(4, "little") + (1).to_bytes(8, "little"),
                   1), "unknown array item type 77"),
    (lambda: _gguf(_string("k") + (9).to_bytes(4, "little") + (12).to_bytes(4, "little")
                   + (1000).to_bytes(8, "little") + b"\0" * 100, 1), "array of 1,000 items .* cannot fit"),
    (lambda: _gguf(_kv_u32("a", 1) + _kv_u32("a", 2), 2), "metadata key 'a' appears twice"),
    (lambda: _gguf(tensors=[("w", (32,), 0, 0), ("w", (32,), 0, 128)], data=b"\0" * 256),
     "tensor name 'w' appears twice"),
    (lambda: _gguf(tensors=[("w", (32,), 0, 4)], data=b"\0" * 256), "offset 4 is not a multiple of the alignment 32"),
    (lambda: _gguf(tensors=[("w", (1, 2, 3, 4, 5), 0, 0)]), "claims 5 dimensions"),
    (lambda: _gguf(tensors=[("w", (32,), 99, 0)], data=b"\0" * 64), "unsupported type type 99"),
    (lambda: _gguf(tensors=[("w", (31,), 8, 0)], data=b"\0" * 64), "not a whole number of Q8_0 blocks"),
], ids=["wrapping-count", "wrapping-4d", "alignment-0", "alignment-3", "alignment-huge", "alignment-string",
        "deep-arrays", "array-item-type", "array-too-long", "duplicate-key", "duplicate-tensor", "misaligned",
        "five-dims", "unknown-type", "partial-block"])
def test_lying_headers_are_format_errors(tmp_path, build, message):
    with pytest.raises(GGUFFormatError, match=message):
        read_gguf(_write(tmp_path, build()))


def test_read_gguf_path_must_be_a_path():
    with pytest.raises(TypeError, match="path must be a str or Path, got int"):
        read_gguf(3)


def _block(d: float, type_name: str) -> np.ndarray:
    block = np.zeros(BLOCK_FORMATS[type_name][1], dtype=np.uint8)
    block[:2] = np.array([d], dtype=np.float16).view(np.uint8)
    return block


@pytest.mark.parametrize("type_name, dequantize", [("Q8_0", dequantize_q8_0), ("Q4_0", dequantize_q4_0),
                                                   ("Q4_1", dequantize_q4_1)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_corrupt_block_scales_are_refused(type_name, dequantize, bad):
    data = np.concatenate([_block(1.0, type_name), _block(bad, type_name)])
    with pytest.raises(ValueError, match=f"{type_name} block 1 has d = .*1 of 2 blocks are corrupt"):
        dequantize(data)


def test_corrupt_q4_1_minimum_is_refused():
    block = _block(1.0, "Q4_1")
    block[2:4] = np.array([np.nan], dtype=np.float16).view(np.uint8)
    with pytest.raises(ValueError, match="Q4_1 block 0 has m = nan"):
        dequantize_q4_1(block)


@pytest.mark.parametrize("quantize, limit", [(quantize_q8_0, "8,319,008"), (quantize_q4_0, "524,032")],
                         ids=["q8_0", "q4_0"])
def test_values_beyond_the_fp16_scale_are_refused(quantize, limit):
    x = np.ones(32, dtype=np.float32)
    x[3] = 1e7 if limit == "8,319,008" else 6e5
    with pytest.raises(ValueError, match=f"values too large .* holds \\|x\\| up to {limit}"):
        quantize(x)
    with pytest.raises(ValueError, match="values too large"):
        quantize(np.full(32, 1e300))  # float64 values beyond float32 too
    x[3] = 8e6 if limit == "8,319,008" else 5e5  # just inside: a finite scale
    assert np.isfinite(np.asarray(quantize(x)[:2]).view(np.float16)).all()


@pytest.mark.parametrize("bad, error, message", [
    ("abc", TypeError, "x must be an array of numbers"),
    ([[1.0] * 32, [1.0] * 31], TypeError, "x must be an array of numbers"),
    (np.float32(1.0), ValueError, "non-zero multiple of 32"),
], ids=["string", "ragged", "scalar"])
def test_quantizers_refuse_non_arrays(bad, error, message):
    with pytest.raises(error, match=message):
        quantize_q8_0(bad)


def test_dequantizers_take_bytes_only():
    assert dequantize_q8_0(bytes(_block(1.0, "Q8_0"))).shape == (32,)
    with pytest.raises(TypeError, match="data must be raw bytes .* of float32"):
        dequantize_q8_0(np.zeros(34, dtype=np.float32))
    with pytest.raises(TypeError, match="data must be raw bytes .* got list"):
        dequantize_q4_0([0] * 18)


def test_an_array_cut_before_its_item_type_is_a_truncation(tmp_path):
    with pytest.raises(GGUFFormatError, match="file truncated: array type of k"):
        read_gguf(_write(tmp_path, _gguf(_string("k") + (9).to_bytes(4, "little"), 1)[:40]))
    with pytest.raises(GGUFFormatError, match="file truncated: magic"):
        read_gguf(_write(tmp_path, b""))


@pytest.mark.parametrize("build, message", [
    (lambda: _gguf(_string("k") + (8).to_bytes(4, "little") + (3).to_bytes(8, "little") + b"\xff\xfe\xfd", 1),
     "string at byte 45 is not UTF-8"),
    (lambda: _gguf(_string("k") + (8).to_bytes(4, "little") + (17 << 20).to_bytes(8, "little")
                   + b"a" * (17 << 20), 1), "string length 17,825,792 at byte 37 is over this reader's limit"),
    (lambda: _gguf((70_000).to_bytes(8, "little") + b"k" * 70_000 + (4).to_bytes(4, "little") + b"\0" * 4, 1),
     "is over this reader's limit of 65,536 bytes: metadata key"),
    (lambda: _gguf(_string("k") + (9).to_bytes(4, "little") + (0).to_bytes(4, "little")
                   + (100).to_bytes(8, "little") + b"\0" * 700, 1), "array of 100 items .* cannot fit"),
], ids=["not-utf8", "string-over-limit", "key-over-limit", "u8-array-list-bigger-than-file"])
def test_strings_and_arrays_cannot_outgrow_the_file(tmp_path, build, message):
    with pytest.raises(GGUFFormatError, match=message):
        read_gguf(_write(tmp_path, build()))


def test_a_number_beyond_float64_is_not_an_array():
    with pytest.raises(TypeError, match="x must be an array of numbers"):
        quantize_q8_0(10**400)
