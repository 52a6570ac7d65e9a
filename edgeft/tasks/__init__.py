"""Task registry: per task the inputs, data, model loading, metric and parity tolerance.

A task is a module; stages only talk to it through this interface (both modules define all of it):

constants
    NAME, OUTPUT_NAMES, INPUT_AXES (dynamic axes of the export), FP32_TOLERANCE (max |Δlogit| of an
    FP32 export), QDQ_TOLERANCE (the same for a QAT export against its fake-quantized torch model),
    GROUP_BY_LENGTH (finetune may bucket by length), HIDDEN_STATE_KD (distill may match hidden
    states; false: logits only), TRANSFORMER (NNCF model type), STATIC_OP_TYPES (what static
    ONNX Runtime INT8 quantizes), EXECUTORCH_INT8_MODULES (torch.nn types an INT8 ExecuTorch
    export quantizes; None: all XNNPACKQuantizer takes)
data
    check_data(recipe) -> [(key path, reason)], load_splits(recipe)
model
    load_processor(model_dir, data=None), load_model(model_dir, label_names=None, data=None),
    input_names(processor), torch_forward(model, batch)
inputs
    encode(processor, items, max_length) -> {name: ndarray}, training_examples(processor, split, data,
    augment), collator(processor), example_lengths(processor, items, max_length) (the unit latency is
    bucketed by), fixed_shape(data), dummy_inputs(names, ...), processor_key(processor, model_dir)
    (artifacts with equal keys share encoded benchmark inputs)
metric
    metrics(logits, labels) -> {"accuracy": ...}
"""

from __future__ import annotations

import importlib

TASK_MODULES = {"text-classification": "text_classification", "image-classification": "image_classification"}


def get_task(name: str):
    return importlib.import_module(f"{__name__}.{TASK_MODULES[name]}")
