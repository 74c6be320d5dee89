"""xferlib: the helper package of xfer-course, a hands-on course on transfer learning.

    import xferlib as xl
    backbone = xl.load_backbone("efficientnet_lite0")      # offline ImageNet weights
    feats, labels = xl.extract_features(backbone, dataset)  # run the frozen backbone once
    head = torch.nn.Linear(backbone.num_features, len(dataset.classes))
    history = xl.fit(head, xl.feature_dataset(feats, labels), epochs=20)
"""

import importlib

# Public names and the module that holds each. They load on first use, so that
# ``python -m xferlib.quiz`` starts in a blink instead of importing PyTorch first.
_HOME = {
    "backbones": ["Backbone", "BackboneSpec", "BackboneUnavailable", "eval_transform", "get_spec", "imagenet_classes",
                  "list_backbones", "load_backbone", "load_imagenet_classifier", "train_transform"],
    "checkpoints": ["load_checkpoint", "save_checkpoint"],
    "data": ["few_shot", "image_folder", "sample_per_class", "stratified_split"],
    "device": ["environment_report", "pick_device", "seed_everything"],
    "features": ["extract_features", "feature_dataset"],
    "freezing": ["count_parameters", "freeze", "freeze_stages", "is_frozen", "trainable_table", "unfreeze"],
    "plots": ["plot_confusion_matrix", "plot_embedding", "plot_feature_maps", "plot_filters", "plot_history", "show_images"],
    "quizzes": ["QuizError", "load_bank", "quiz"],
    "training": ["Classifier", "History", "accuracy_spread", "build_classifier", "evaluate", "fit", "param_groups", "predict"],
}
_NAMES = {name: module for module, names in _HOME.items() for name in names}
_SUBMODULES = {"adaptation", "challenges", "data", "flashcards", "text"}  # used as xl.<module>.<name>


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'xferlib' has no attribute {name!r}")
    globals()[name] = value  # next time, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "Backbone", "BackboneSpec", "BackboneUnavailable", "Classifier", "History", "QuizError",
    "accuracy_spread", "adaptation", "build_classifier", "challenges", "count_parameters", "data", "environment_report", "text",
    "eval_transform", "evaluate", "extract_features", "feature_dataset", "few_shot", "fit",
    "flashcards", "freeze", "freeze_stages", "get_spec", "image_folder", "imagenet_classes", "is_frozen",
    "list_backbones", "load_backbone", "load_bank", "load_checkpoint", "load_imagenet_classifier",
    "param_groups", "pick_device", "plot_confusion_matrix", "plot_embedding", "plot_feature_maps",
    "plot_filters", "plot_history", "predict", "quiz", "sample_per_class", "save_checkpoint",
    "seed_everything", "show_images", "stratified_split", "train_transform", "trainable_table",
    "unfreeze",
]
