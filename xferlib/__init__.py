"""xferlib: the helper package of xfer-course, a hands-on course on transfer learning.

    import xferlib as xl
    backbone = xl.load_backbone("efficientnet_lite0")      # offline ImageNet weights
    feats, labels = xl.extract_features(backbone, dataset)  # run the frozen backbone once
    head = torch.nn.Linear(backbone.num_features, len(dataset.classes))
    history = xl.fit(head, xl.feature_dataset(feats, labels), epochs=20)
"""

from . import data
from . import adaptation
from . import challenges, flashcards
from . import text
from .backbones import (
    Backbone,
    BackboneSpec,
    BackboneUnavailable,
    get_spec,
    imagenet_classes,
    list_backbones,
    load_backbone,
    load_imagenet_classifier,
)
from .checkpoints import load_checkpoint, save_checkpoint
from .data import eval_transform, few_shot, image_folder, sample_per_class, stratified_split, train_transform
from .device import environment_report, pick_device, seed_everything
from .features import extract_features, feature_dataset
from .freezing import count_parameters, freeze, freeze_stages, is_frozen, trainable_table, unfreeze
from .plots import plot_confusion_matrix, plot_embedding, plot_feature_maps, plot_filters, plot_history, show_images
from .quizzes import QuizError, load_bank, quiz
from .training import Classifier, History, accuracy_spread, build_classifier, evaluate, fit, param_groups, predict

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
