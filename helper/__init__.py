"""Quantization Fundamentals: the tested code behind the lessons. Import names from here."""

from .dtypes import (FLOAT_LAYOUTS, INT_BITS, Decomposition, FloatLayout, all_finite_values, bit_width, decompose,
                     describe_value, dtype_name, exact_decimal, format_table, format_table_text, from_bits,
                     neighbours, resolve_dtype, stored_value, to_bits)
from .evaluate import logit_error, mean_cosine, weight_differences
from .exercises import EXERCISES, Feedback, check, evaluate
from .models import (ARCHITECTURES, SMOLLM2_GGUF_NAME, DummyModel, OfflineModelMissing, blip_base_config,
                     build_model, cache_dir, chat, default_dtype, flan_t5_small_config, param_dtypes, prepare_all, embed_sentences, load_minilm, load_smollm2, minilm_path,
                     minilm_zip_path, smollm2_gguf_path)
from .notebook import quiet_libraries, seed_everything, set_offline, set_up_notebook
from .plots import (FIELD_COLOURS, plot_bit_layout, plot_bytes_per_parameter, plot_downcast_cost, plot_footprints,
                    plot_model_memory, plot_value_spacing)
from .sizes import (FORMAT_BITS, bits_per_parameter, compute_module_sizes, footprints_by_dtype, format_bytes,
                    memory_table_text,
                    model_memory_bytes, module_sizes_text, tensor_bytes)
from .widgets import bit_explorer

__all__ = [
    "FLOAT_LAYOUTS", "INT_BITS", "Decomposition", "FloatLayout", "all_finite_values", "bit_width", "decompose",
    "describe_value", "dtype_name", "exact_decimal", "format_table", "format_table_text", "from_bits",
    "neighbours", "resolve_dtype", "stored_value", "to_bits",
    "logit_error", "mean_cosine", "weight_differences",
    "EXERCISES", "Feedback", "check", "evaluate",
    "ARCHITECTURES", "SMOLLM2_GGUF_NAME", "DummyModel", "OfflineModelMissing", "blip_base_config", "build_model",
    "cache_dir", "chat", "default_dtype", "flan_t5_small_config", "param_dtypes", "prepare_all", "embed_sentences", "load_minilm", "load_smollm2", "minilm_path",
    "minilm_zip_path", "smollm2_gguf_path",
    "quiet_libraries", "seed_everything", "set_offline", "set_up_notebook",
    "FIELD_COLOURS", "plot_bit_layout", "plot_bytes_per_parameter", "plot_downcast_cost", "plot_footprints", "plot_model_memory", "plot_value_spacing",
    "FORMAT_BITS", "bits_per_parameter", "compute_module_sizes", "footprints_by_dtype", "format_bytes", "memory_table_text",
    "model_memory_bytes", "module_sizes_text", "tensor_bytes",
    "bit_explorer",
]
