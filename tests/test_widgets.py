import helper


def test_bit_explorer_follows_typed_values_and_flipped_bits():
    explorer = helper.bit_explorer(1 / 3, "float16")
    (dtype_box, value_box), bits_row, report = explorer.children[0].children, explorer.children[1], \
        explorer.children[2]
    assert len(bits_row.children) == 16 and "0.333251953125" in report.value
    value_box.value = 0.1
    assert "".join(b.description for b in bits_row.children) == helper.to_bits(0.1, "float16")
    bits_row.children[0].value = True  # flip the sign bit
    assert value_box.value == -helper.stored_value(0.1, "float16")
    dtype_box.value = "bfloat16"
    assert len(explorer.children[1].children) == 16 and "bfloat16" in report.value
    dtype_box.value = "float8_e4m3fn"
    assert len(explorer.children[1].children) == 8


def test_playground_report_and_widget():
    import torch

    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    x_hat, report = helper.playground_report(x, 4, True, "per_group", 32, "minmax")
    assert x_hat.shape == x.shape and "4-bit symmetric per_group (g=32), minmax" in report
    assert report.count("MSE") == 1
    widget = helper.quantization_playground(x)
    report, picture = widget.children[2], widget.children[3]
    first_png = bytes(picture.value)
    assert first_png.startswith(b"\x89PNG") and "4-bit symmetric per_channel" in report.value
    widget.children[0].children[0].value = 8  # move the bits slider
    assert "8-bit" in report.value and bytes(picture.value) != first_png
