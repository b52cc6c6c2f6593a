import pytest
import torch

import helper
from helper import deployment


def test_smollm2_kv_shape_is_the_models(smollm2):
    config = smollm2[0].config
    assert deployment._SMOLLM2_KV == {"n_layers": config.num_hidden_layers,
                                      "n_kv_heads": config.num_key_value_heads,
                                      "head_dim": config.hidden_size // config.num_attention_heads}


def test_prompt_ids_are_the_same_rows_of_the_evaluation_text():
    ids = deployment.prompt_ids(16, batch=3)
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert torch.equal(ids[0], ids[2])
    with pytest.raises(ValueError, match="tokens"):
        deployment.prompt_ids(0)


@pytest.mark.parametrize("name, layer", [("w8a16", "W8A16Linear"), ("int4-kernel", "Int4WeightOnlyLinear")])
def test_torch_variants_hold_the_layers_they_name(name, layer):
    model = deployment.build_torch_variant(name)
    assert type(model.model.layers[0].mlp.up_proj).__name__ == layer
    assert type(model.lm_head).__name__ == "Linear"  # lm_head stays, as in lessons 04-06


def test_measure_variant_runs_in_a_fresh_process_and_reports_medians():
    result = deployment.measure_variant("int8-kernel", prompt_tokens=8, new_tokens=3, repeats=3)
    assert result["variant"] == "int8-kernel" and result["repeats"] == 3 and len(result["tokens"]) == 3
    assert result["decode_tokens_per_s"] > 0 and result["prefill_tokens_per_s"] > 0
    assert result["peak_rss"] >= result["baseline_rss"]
    # the memory-mapped fp32 checkpoint is let go: what the process holds is the variant's own weights
    # (it held the fp32 file too, 3x the weights, before build_torch_variant copied the tensors it keeps)
    assert result["loaded_rss"] - result["baseline_rss"] < 1.3 * result["weight_bytes"]
    # int8 codes + fp32 scales in the blocks, lm_head in fp32: what the kernels read per token
    model = deployment.build_torch_variant("int8-kernel")
    assert result["bytes_per_token"] == helper.decode_bytes_per_token(model)


def test_unknown_variants_are_refused():
    with pytest.raises(ValueError, match="unknown variant 'fp8'"):
        deployment.measure_variant("fp8")
    with pytest.raises(ValueError, match="unknown PyTorch variant"):
        deployment.build_torch_variant("llama-q4_1")
