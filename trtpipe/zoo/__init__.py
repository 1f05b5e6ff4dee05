"""The model zoo: named models (torchvision, EfficientNet-Lite, any timm model) and their ONNX export.

    from trtpipe.zoo import get_model, list_models
    from trtpipe.zoo.export import export_model     # imports onnx; torch only when it exports

Importing this package needs neither torch nor timm: they load when a model is built.
"""

from trtpipe.zoo.registry import (
    ModelEntry,
    WeightsRequest,
    get_model,
    list_families,
    list_models,
    load_model,
    register_model,
)

__all__ = ["ModelEntry", "WeightsRequest", "get_model", "list_families", "list_models", "load_model", "register_model"]
