"""Quantization Fundamentals: the tested code behind the lessons. Import names from here."""

from .dtypes import (FLOAT_LAYOUTS, INT_BITS, Decomposition, FloatLayout, all_finite_values, bit_width, decompose,
                     describe_value, dtype_name, exact_decimal, format_table, format_table_text, from_bits,
                     neighbours, resolve_dtype, stored_value, to_bits)
from .exercises import EXERCISES, Feedback, check, evaluate
from .models import (SMOLLM2_GGUF_NAME, OfflineModelMissing, cache_dir, prepare_all, embed_sentences, load_minilm, load_smollm2, minilm_path,
                     minilm_zip_path, smollm2_gguf_path)
from .notebook import quiet_libraries, seed_everything, set_offline, set_up_notebook
from .plots import FIELD_COLOURS, plot_bit_layout, plot_bytes_per_parameter, plot_model_memory, plot_value_spacing
from .sizes import FORMAT_BITS, bits_per_parameter, format_bytes, memory_table_text, model_memory_bytes
from .widgets import bit_explorer

__all__ = [
    "FLOAT_LAYOUTS", "INT_BITS", "Decomposition", "FloatLayout", "all_finite_values", "bit_width", "decompose",
    "describe_value", "dtype_name", "exact_decimal", "format_table", "format_table_text", "from_bits",
    "neighbours", "resolve_dtype", "stored_value", "to_bits",
    "EXERCISES", "Feedback", "check", "evaluate",
    "SMOLLM2_GGUF_NAME", "OfflineModelMissing", "cache_dir", "prepare_all", "embed_sentences", "load_minilm", "load_smollm2", "minilm_path",
    "minilm_zip_path", "smollm2_gguf_path",
    "quiet_libraries", "seed_everything", "set_offline", "set_up_notebook",
    "FIELD_COLOURS", "plot_bit_layout", "plot_bytes_per_parameter", "plot_model_memory", "plot_value_spacing",
    "FORMAT_BITS", "bits_per_parameter", "format_bytes", "memory_table_text", "model_memory_bytes",
    "bit_explorer",
]
