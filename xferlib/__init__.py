"""xferlib: the helper package of xfer-course, a hands-on course on transfer learning.

    import xferlib as xl
    backbone = xl.load_backbone("efficientnet_lite0")      # offline ImageNet weights
    feats, labels = xl.extract_features(backbone, dataset)  # run the frozen backbone once
    head = torch.nn.Linear(backbone.num_features, len(dataset.classes))
    history = xl.fit(head, xl.feature_dataset(feats, labels), epochs=20)

Every module is reachable as ``xl.<module>`` and the most used names as ``xl.<name>``. Both
load on first use, so that ``python -m xferlib.quizzes`` starts in a blink instead of
importing PyTorch first.
"""

import importlib

# The one list: each module, lowest floor first, and the names it lends to ``xl``.
_HOME = {
    "display": [],
    "experiments": ["ClaimFailed", "Comparison", "claim", "compare", "mean_interval"],
    "distributed": [],
    "storage": ["clear_cache"],
    "device": ["environment_report", "pick_device", "seed_everything"],
    "backbones": ["Backbone", "BackboneSpec", "BackboneUnavailable", "eval_transform", "get_spec", "imagenet_classes",
                  "list_backbones", "load_backbone", "load_imagenet_classifier", "small_backbone", "small_cnn", "train_transform"],
    "data": ["few_shot", "image_folder", "sample_per_class", "stratified_split"],
    "corruptions": [],
    "freezing": ["count_parameters", "freeze", "freeze_stages", "is_frozen", "trainable_table", "unfreeze"],
    "training": ["Classifier", "History", "accuracy_spread", "build_classifier", "evaluate", "fit", "param_groups", "predict"],
    "features": ["extract_features", "feature_dataset"],
    "costs": ["release_memory", "training_memory"],
    "checkpoints": ["load_checkpoint", "save_checkpoint"],
    "diagnostics": ["Finding", "doctor"],
    "plots": ["plot_confusion_matrix", "plot_embedding", "plot_feature_maps", "plot_filters", "plot_history", "show_figure", "show_images"],
    "quizzes": ["QuizError", "load_bank", "quiz"],
    "flashcards": [],
    "challenges": [],
    "adaptation": [],
    "calibration": ["apply_temperature", "expected_calibration_error", "fit_temperature", "plot_reliability", "reliability"],
    "similarity": ["linear_cka"],
    "transferability": ["hscore", "knn_score", "leep", "linear_probe_score", "logme"],
    "weightspace": ["interpolate_weights", "l2sp_penalty", "weight_distance"],
    "text": [],
    "editions": [],
}
_NAMES = {name: module for module, names in _HOME.items() for name in names}

__version__ = "0.1.0"
__all__ = sorted(set(_HOME) | set(_NAMES))


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _HOME:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'xferlib' has no attribute {name!r}")
    globals()[name] = value  # next time, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
