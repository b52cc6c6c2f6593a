import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import helper
from helper.packing import pack, packed_length, unpack


def test_worked_example():
    assert pack(torch.tensor([1, 0, 3, 2]), 2).tolist() == [0b10_11_00_01] == [177]
    assert pack(torch.tensor([0xA, 0x3]), 4).tolist() == [0x3A]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_round_trip_any_length(bits, data):
    rows = data.draw(st.integers(1, 4))
    length = data.draw(st.integers(0, 37))  # odd lengths are zero-padded in the last byte
    values = torch.tensor(data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=rows * length,
                                             max_size=rows * length)), dtype=torch.int64).reshape(rows, length)
    packed = pack(values, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (rows, packed_length(length, bits))
    assert torch.equal(unpack(packed, bits, length), values.to(torch.uint8))


def test_packing_really_saves_memory():
    values = torch.randint(0, 16, (576, 1536))
    assert helper.tensor_bytes(pack(values, 4)) == 576 * 1536 // 2
    assert helper.tensor_bytes(pack(values % 4, 2)) == 576 * 1536 // 4


@pytest.mark.parametrize("call, message", [
    (lambda: pack(torch.tensor([1, 2]), 3), "bits must divide 8"),
    (lambda: pack(torch.tensor([1, 16]), 4), "codes must be in 0..15"),
    (lambda: pack(torch.tensor([-1, 2]), 4), "shift signed codes"),
    (lambda: pack(torch.tensor([0.5]), 4), "unsigned integer codes"),
    (lambda: unpack(torch.tensor([1], dtype=torch.int32), 4, 2), "uint8"),
    (lambda: unpack(torch.tensor([1], dtype=torch.uint8), 4, 3), "does not fit"),
    (lambda: packed_length(5, 5), "bits must divide 8"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: packed_length(2.5, 4), "n_values must be an integer"),
    (lambda: packed_length(-3, 4), "n_values must be an integer >= 0"),
    (lambda: pack([1, 2], 4), "values must be a torch.Tensor"),
    (lambda: pack(torch.tensor(3), 4), "values must have at least one dimension"),
    (lambda: unpack(torch.tensor([1], dtype=torch.uint8), 4, "2"), "length must be an integer"),
    (lambda: unpack(b"\x01", 4, 2), "packed must be a torch.Tensor"),
    (lambda: unpack(torch.tensor(1, dtype=torch.uint8), 4, 1), "packed must have at least one dimension"),
    (lambda: pack(torch.tensor([1]), "4"), "bits must divide 8"),
], ids=["float-count", "negative-count", "list-values", "0-dim-values", "string-length", "bytes-packed",
        "0-dim-packed", "string-bits"])
def test_odd_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("bits", [torch.tensor([]), torch.tensor(4), 4.0, True, None], ids=repr)
def test_bits_that_are_not_an_int_are_refused(bits):
    with pytest.raises(ValueError, match="bits must divide 8"):
        packed_length(8, bits)
