"""Quantization Fundamentals: the tested code behind the lessons. Import names from here."""

from .awq import (AWQ_SEARCHES, LLAMA_SCALE_GROUPS, AWQConfig, ScaleGroup, activation_scale, apply_clip, apply_scale,
                  awq_quantize_blocks, awq_quantize_model, awq_scales, clip_search, rtn_weight, search_block_scale,
                  search_scale)
from .calibration import CALIBRATION_METHODS, RangeObserver, calibrate_range, capture_inputs
from .codebooks import (bin_counts, bin_edges, bnb_fp4_codebook, codebook_bits_per_parameter, code_entropy_bits, codebook_mse,
                        codebook_quantize_model, dequantize_blockwise, dequantize_double, double_quantize,
                        fake_quantize_codebook, fp4_e2m1_codebook, int4_codebook, nf4_codebook, nf4_expected_mse,
                        quantize_blockwise)
from .dtypes import (FLOAT_LAYOUTS, INT_BITS, Decomposition, FloatLayout, all_finite_values, bit_width, decompose,
                     describe_value, dtype_name, exact_decimal, format_table, format_table_text, from_bits,
                     neighbours, resolve_dtype, stored_value, to_bits)
from .evaluate import (linear_weight_bits, logit_error, mean_cosine, next_token_agreement, perplexity, reference_text,
                       stdlib_docstring_text, token_windows, weight_differences)
from .exercises import EXERCISES, Feedback, check, evaluate
from .progress import progress, progress_report, reset_progress
from .format_plots import (LLAMA_CPP_7B_TRADEOFFS, plot_code_usage, plot_codebook_bins, plot_gguf_tradeoffs,
                           plot_q4_1_block)
from .gguf_io import (BLOCK_FORMATS, GGUFFile, GGUFFormatError, TensorInfo, dequantize_q4_0, dequantize_q4_1,
                      dequantize_q8_0, k_quant_bits_per_weight, load_tensor, quantize_q4_0, quantize_q8_0,
                      raw_tensor_bytes, read_gguf, split_block, write_gguf)
from .gptq import (GPTQConfig, GPTQResult, HessianAccumulator, checkpoint_tensors, gptq_column_step, gptq_pack,
                   gptq_quantize_blocks, gptq_quantize_model, gptq_quantize_weight, rtn_quantize_weight,
                   sequential_stages, weight_scheme)
from .checkpoint_export import (GPTQ_PACK_BITS, export_gptq_checkpoint, pack_int32, read_gptq_checkpoint,
                                unpack_int32)
from .kernels import INT4_KERNEL_GROUP_SIZES, Int4WeightOnlyLinear, Int8WeightOnlyLinear, to_fused_kernels
from .speed import (arithmetic_intensity, current_rss_bytes, decode_bound_tokens_per_s, decode_bytes_per_token,
                    greedy_decode_timing, kv_cache_bytes, measure_bandwidth, measure_matmul_flops, median_of_runs,
                    peak_rss_bytes, release_memory, reset_peak_rss, ridge_point, roofline)
from .deployment import (LLAMA_CPP_VARIANTS, TORCH_VARIANTS, VARIANTS, build_torch_variant, measure_variant,
                         prompt_ids, run_variant, smollm2_folder)
from .deployment_plots import (DECISION_STEPS, plot_decision_flow, plot_decode_vs_bound, plot_roofline,
                               predicted_rss_bytes, speed_table_text)
from .llama_cpp import (LLAMA_CPP_INSTALL, LLAMA_CPP_VERSION, LlamaCppMissing, llama_decode_timing, llama_greedy,
                        llama_perplexity, llama_quantize, load_llama, our_gguf_path, require_llama_cpp)
from .layers import (W2A16Linear, W4A16Linear, W8A16Linear, WnA16Linear, fit_group_size, load_quantized,
                     replace_linear, save_quantized)
from .linear_quant import (SUPPORTED_BITS, QuantizedTensor, QuantScheme, choose_qparams, choose_qparams_asymmetric,
                           choose_qparams_symmetric, dequantize, dequantize_with_offset, fake_quantize, from_rows,
                           integer_range, quantization_error, quantize, quantize_tensor, quantize_with_offset, to_rows)
from .integer_matmul import (INT32_MAX, INT32_MIN, int8_matmul_int32, multiply_by_quantized_multiplier,
                             quantize_multiplier, quantized_linear, requantize, rounding_divide_by_power_of_two,
                             pytorch_quantized_linear, saturating_rounding_doubling_high_mul, zero_point_terms)
from .threads import one_thread
from .layerwise import (BlockInputs, capture_block_inputs, decoder_blocks, linear_layers,
                        quantize_blocks_sequentially, run_block)
from .format_compare import LESSON_08_FORMATS, apply_weight_format, plot_scale_headroom, scale_headroom
from .kv_cache import (KV_BITS, cache_perplexity, fake_quantize_groups, kivi_attention, kivi_quantized_length,
                       kv_cache_table, quantize_keys_per_channel, quantize_values_per_token, quantized_kv_cache_bytes,
                       tail_perplexity)
from .microscaling import (ELEMENT_FORMATS, FP8_GRANULARITIES, MX_FORMATS, ElementFormat, MXQuantized, NVFP4Quantized,
                           W8A8FP8FakeLinear, block_quantize_model, decode_e8m0, decode_element, dequantize_mx,
                           dequantize_nvfp4, element_values, encode_e8m0, encode_element, fake_quantize_fp8,
                           fake_quantize_mx, fake_quantize_nvfp4, mx_bits_per_weight, mx_shared_exponent,
                           nvfp4_bits_per_weight, quantize_mx, quantize_nvfp4, round_to_element, w8a8_fp8_model)
from .mixed_precision import (UNIT_KINDS, allocate_bits, apply_allocation, bits_per_weight_of, fisher_sensitivity,
                              layer_units, rtn_int4_weight, unit_sensitivity)
from .method_plots import (plot_gptq_columns, plot_layer_sensitivity, plot_salient_channels, plot_sensitivity,
                           plot_smoothing)
from .methods import (LESSON_06_METHODS, Method, apply_method, choose_int8_layers, evaluate_methods,
                      grid_bits_per_weight, method_bits_per_weight, method_table_text)
from .models import (ARCHITECTURES, SMOLLM2_GGUF_NAME, DummyModel, OfflineModelMissing, blip_base_config,
                     build_model, cache_dir, chat, default_dtype, flan_t5_small_config, param_dtypes, prepare_all, embed_sentences, load_gguf_model, load_minilm, load_smollm2, minilm_path,
                     minilm_zip_path, smollm2_gguf_path)
from .notebook import quiet_libraries, seed_everything, set_offline, set_up_notebook
from .plots import (FIELD_COLOURS, plot_bit_layout, plot_bytes_per_parameter, plot_calibration_ranges,
                    plot_downcast_cost, plot_error_vs_group_size, plot_footprints, plot_grid_on_histogram,
                    plot_model_memory, plot_module_sizes, plot_number_line, plot_perplexity_vs_bits,
                    plot_quantization_heatmaps, plot_value_spacing)
from .outliers import LLMInt8Linear, find_outlier_features, int8_matmul_vectorwise, llm_int8_linear, llm_int8_model
from .packing import PACKABLE_BITS, pack, packed_length, unpack
from .qat import FakeQuantLinear, accuracy, make_mlp, make_spirals, ptq_weights, to_fake_quant, train_classifier
from .lora import (LoRALinear, NF4Weight, add_lora, lora_memory_bytes, lora_parameters, make_lora_optimizer,
                   measured_training_bytes, merge_lora, merge_lora_model, train_lora)
from .training_plots import plot_code_moves, plot_training_curves
from .qat_llm import (QAT_CONFIG, QATLinear, code_changes, distillation_loss, freeze_qat, learn_scales_blockwise,
                      lsq_fake_quantize, qat_bits_per_weight, qat_layers, qat_parameters, round_ste, stored_weights,
                      to_qat, train_distilled)
from .quant_noise import (best_step_gaussian_mse, gaussian_mse, lloyd_max_gaussian, sqnr_full_scale_sine_db,
                          sqnr_full_scale_uniform_db, uniform_noise_power)
from .recipes import LESSON_04_RECIPES, Recipe, apply_recipe, evaluate_recipes, recipe_table_text
from .smoothquant import (ACTIVATION_MODES, W8A8FakeLinear, activation_channel_absmax, fake_int8_rows, smooth_model,
                          smoothing_scales, w8a8_model)
from .sizes import (FORMAT_BITS, bits_per_parameter, compute_module_sizes, footprints_by_dtype, format_bytes,
                    memory_table_text,
                    model_memory_bytes, module_sizes_text, size_breakdown, tensor_bytes,
                    weight_storage_bits)
from .validation import (InputTypeError, check_bool, check_choice, check_finite, check_float_tensor,
                         check_int_in_range, check_percentile, check_positive, check_probability, check_real,
                         check_tensor, check_token_ids)
from .widgets import bit_explorer, playground_report, quantization_playground

__all__ = [
    "one_thread",
    "InputTypeError", "check_bool", "check_choice", "check_finite", "check_float_tensor", "check_int_in_range",
    "check_percentile", "check_positive", "check_probability", "check_real", "check_tensor", "check_token_ids",
    "FLOAT_LAYOUTS", "INT_BITS", "Decomposition", "FloatLayout", "all_finite_values", "bit_width", "decompose",
    "describe_value", "dtype_name", "exact_decimal", "format_table", "format_table_text", "from_bits",
    "neighbours", "resolve_dtype", "stored_value", "to_bits",
    "linear_weight_bits", "logit_error", "mean_cosine", "next_token_agreement", "perplexity", "reference_text",
    "stdlib_docstring_text",
    "token_windows", "weight_differences",
    "EXERCISES", "Feedback", "check", "evaluate",
    "ARCHITECTURES", "SMOLLM2_GGUF_NAME", "DummyModel", "OfflineModelMissing", "blip_base_config", "build_model",
    "cache_dir", "chat", "default_dtype", "flan_t5_small_config", "param_dtypes", "prepare_all", "embed_sentences", "load_gguf_model", "load_minilm", "load_smollm2", "minilm_path",
    "minilm_zip_path", "smollm2_gguf_path",
    "quiet_libraries", "seed_everything", "set_offline", "set_up_notebook",
    "progress", "progress_report", "reset_progress",
    "FIELD_COLOURS", "plot_bit_layout", "plot_bytes_per_parameter", "plot_downcast_cost", "plot_footprints", "plot_model_memory", "plot_value_spacing",
    "FORMAT_BITS", "bits_per_parameter", "compute_module_sizes", "footprints_by_dtype", "format_bytes", "memory_table_text",
    "model_memory_bytes", "module_sizes_text", "size_breakdown", "tensor_bytes", "weight_storage_bits",
    "bit_explorer", "playground_report", "quantization_playground",
    "CALIBRATION_METHODS", "RangeObserver", "calibrate_range", "capture_inputs",
    "SUPPORTED_BITS", "QuantizedTensor", "QuantScheme", "choose_qparams", "choose_qparams_asymmetric",
    "choose_qparams_symmetric", "dequantize", "dequantize_with_offset", "quantize_with_offset", "fake_quantize", "from_rows", "integer_range", "quantization_error",
    "quantize", "quantize_tensor", "to_rows",
    "FakeQuantLinear", "accuracy", "make_mlp", "make_spirals", "ptq_weights", "to_fake_quant", "train_classifier",
    "best_step_gaussian_mse", "gaussian_mse", "lloyd_max_gaussian", "sqnr_full_scale_sine_db",
    "sqnr_full_scale_uniform_db", "uniform_noise_power",
    "plot_calibration_ranges", "plot_error_vs_group_size", "plot_grid_on_histogram", "plot_number_line",
    "plot_quantization_heatmaps", "plot_module_sizes", "plot_perplexity_vs_bits",
    "W2A16Linear", "W4A16Linear", "W8A16Linear", "WnA16Linear", "fit_group_size", "load_quantized", "replace_linear",
    "save_quantized",
    "PACKABLE_BITS", "pack", "packed_length", "unpack",
    "LESSON_04_RECIPES", "Recipe", "apply_recipe", "evaluate_recipes", "recipe_table_text",
    "LLAMA_SCALE_GROUPS", "AWQConfig", "ScaleGroup", "activation_scale", "apply_scale", "awq_quantize_blocks",
    "awq_quantize_model", "awq_scales", "rtn_weight", "search_scale", "AWQ_SEARCHES", "apply_clip", "clip_search",
    "search_block_scale",
    "GPTQConfig", "GPTQResult", "HessianAccumulator", "gptq_pack", "gptq_quantize_blocks", "gptq_quantize_model",
    "gptq_quantize_weight", "weight_scheme", "checkpoint_tensors", "gptq_column_step", "rtn_quantize_weight",
    "sequential_stages",
    "BlockInputs", "capture_block_inputs", "decoder_blocks", "linear_layers", "quantize_blocks_sequentially",
    "run_block",
    "UNIT_KINDS", "allocate_bits", "apply_allocation", "bits_per_weight_of", "layer_units", "rtn_int4_weight",
    "fisher_sensitivity",
    "unit_sensitivity",
    "plot_gptq_columns", "plot_salient_channels", "plot_sensitivity", "plot_smoothing", "plot_layer_sensitivity",
    "LESSON_06_METHODS", "Method", "apply_method", "evaluate_methods", "grid_bits_per_weight", "method_table_text",
    "method_bits_per_weight", "choose_int8_layers",
    "LLMInt8Linear", "find_outlier_features", "int8_matmul_vectorwise", "llm_int8_linear", "llm_int8_model",
    "ACTIVATION_MODES", "W8A8FakeLinear", "activation_channel_absmax", "fake_int8_rows", "smooth_model",
    "smoothing_scales", "w8a8_model",
    "bin_counts", "bin_edges", "bnb_fp4_codebook", "codebook_bits_per_parameter", "code_entropy_bits", "codebook_mse", "codebook_quantize_model",
    "dequantize_blockwise", "dequantize_double", "double_quantize", "fake_quantize_codebook", "fp4_e2m1_codebook",
    "int4_codebook", "nf4_codebook", "nf4_expected_mse", "quantize_blockwise",
    "LLAMA_CPP_7B_TRADEOFFS", "plot_code_usage", "plot_codebook_bins", "plot_gguf_tradeoffs", "plot_q4_1_block",
    "BLOCK_FORMATS", "GGUFFile", "GGUFFormatError", "TensorInfo", "dequantize_q4_0", "dequantize_q4_1",
    "dequantize_q8_0", "k_quant_bits_per_weight", "load_tensor", "quantize_q4_0", "quantize_q8_0", "raw_tensor_bytes",
    "read_gguf", "split_block", "write_gguf",
    "INT32_MAX", "INT32_MIN", "int8_matmul_int32", "multiply_by_quantized_multiplier", "quantize_multiplier",
    "quantized_linear", "requantize", "rounding_divide_by_power_of_two", "saturating_rounding_doubling_high_mul",
    "zero_point_terms", "pytorch_quantized_linear",
    "ELEMENT_FORMATS", "FP8_GRANULARITIES", "MX_FORMATS", "ElementFormat", "MXQuantized", "NVFP4Quantized",
    "W8A8FP8FakeLinear", "block_quantize_model", "decode_e8m0", "decode_element", "dequantize_mx",
    "dequantize_nvfp4", "element_values", "encode_e8m0", "encode_element", "fake_quantize_fp8", "fake_quantize_mx",
    "fake_quantize_nvfp4", "mx_bits_per_weight", "mx_shared_exponent", "nvfp4_bits_per_weight", "quantize_mx",
    "quantize_nvfp4", "round_to_element", "w8a8_fp8_model",
    "KV_BITS", "cache_perplexity", "fake_quantize_groups", "kivi_attention", "kivi_quantized_length", "kv_cache_table",
    "quantize_keys_per_channel", "quantize_values_per_token", "quantized_kv_cache_bytes", "tail_perplexity",
    "LESSON_08_FORMATS", "apply_weight_format", "plot_scale_headroom", "scale_headroom",
    "LoRALinear", "NF4Weight", "add_lora", "lora_memory_bytes", "lora_parameters", "make_lora_optimizer",
    "measured_training_bytes", "merge_lora", "merge_lora_model", "train_lora",
    "QAT_CONFIG", "QATLinear", "code_changes", "distillation_loss", "freeze_qat", "learn_scales_blockwise",
    "lsq_fake_quantize", "qat_bits_per_weight", "qat_layers", "qat_parameters", "round_ste", "to_qat",
    "train_distilled", "plot_code_moves", "plot_training_curves", "stored_weights",
    "GPTQ_PACK_BITS", "export_gptq_checkpoint", "pack_int32", "read_gptq_checkpoint", "unpack_int32",
    "INT4_KERNEL_GROUP_SIZES", "Int4WeightOnlyLinear", "Int8WeightOnlyLinear", "to_fused_kernels",
    "arithmetic_intensity", "current_rss_bytes", "decode_bound_tokens_per_s", "decode_bytes_per_token",
    "greedy_decode_timing", "kv_cache_bytes", "measure_bandwidth", "measure_matmul_flops", "median_of_runs",
    "peak_rss_bytes", "release_memory", "reset_peak_rss", "ridge_point", "roofline",
    "LLAMA_CPP_VARIANTS", "TORCH_VARIANTS", "VARIANTS", "build_torch_variant", "measure_variant", "prompt_ids",
    "run_variant", "smollm2_folder",
    "DECISION_STEPS", "plot_decision_flow", "plot_decode_vs_bound", "plot_roofline", "predicted_rss_bytes",
    "speed_table_text",
    "LLAMA_CPP_INSTALL", "LLAMA_CPP_VERSION", "LlamaCppMissing", "llama_decode_timing", "llama_greedy",
    "llama_perplexity", "llama_quantize", "load_llama", "our_gguf_path", "require_llama_cpp",
]
