"""The code challenges: each checker passes its own solution and names what is wrong in
wrong answers (the learner reads only the message, so the tests read it too)."""

import textwrap

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from xferlib import challenges as C


def verdict(challenge, fn, capsys):
    ok = challenge.check(fn)
    return ok, capsys.readouterr().out


def solution(challenge):
    namespace = {"torch": torch, "nn": nn}
    exec(textwrap.dedent(challenge.solution_text), namespace)
    return next(v for k, v in namespace.items() if callable(v) and k not in ("torch", "nn"))


@pytest.mark.parametrize("challenge", C.ALL, ids=[c.name for c in C.ALL])
def test_every_solution_passes(challenge, capsys):
    ok, out = verdict(challenge, solution(challenge), capsys)
    assert ok is True, out
    assert out.startswith(f"✔ {challenge.name}: correct")


def test_there_are_five_challenges_with_hints_and_tasks(capsys):
    assert len(C.ALL) >= 5
    for c in C.ALL:
        c.hint()
        c.solution()
        out = capsys.readouterr().out
        assert out.startswith(f"Hint ({c.name}):") and "Solution" in out and "def " in out
        assert repr(c).startswith(f"Challenge: {c.name}\n")


def test_an_unwritten_exercise_is_not_a_crash(capsys):
    def stub(*args):
        raise NotImplementedError("Exercise: your code here")

    ok, out = verdict(C.freeze_head, stub, capsys)
    assert ok is False and "not written yet" in out


# ----------------------------------------------------------------------------- 1. freeze
def freeze_everything(model):
    for p in model.parameters():
        p.requires_grad = False


def freeze_convolutions_only(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.requires_grad = False


FREEZE_HEAD_WRONG = [
    (freeze_everything, "the head's weight is frozen"),
    (freeze_convolutions_only, "still trainable, the first is bn1.weight"),
    (lambda model: 42, "return the model (or None), got a int"),
]


@pytest.mark.parametrize("wrong, message", FREEZE_HEAD_WRONG)
def test_freeze_head_names_the_problem(wrong, message, capsys):
    ok, out = verdict(C.freeze_head, wrong, capsys)
    assert ok is False and out.startswith("✘ Freeze all but the head") and message in out


# Wrong answers, each with the phrase its checker must say: (challenge, answer, message).
WRONG_ANSWERS = []

# ----------------------------------------------------------------------------- 2. param groups
WRONG_ANSWERS += [
    (C.param_groups, lambda m, h, b: [{"params": m.parameters(), "lr": h}], "the body (bn1.weight) would train at lr 0.001, expected body_lr = 0.0001"),
    (C.param_groups, lambda m, h, b: [{"params": m.parameters(), "lr": b}, {"params": m.fc.parameters(), "lr": h}], "fc.weight is in two groups"),
    (C.param_groups, lambda m, h, b: [{"params": [p for n, p in m.named_parameters() if not n.startswith("fc.")], "lr": b}], "fc.weight is in no group"),
    (C.param_groups, lambda m, h, b: list(m.parameters()), "got a list of Parameter"),
    (C.param_groups, lambda m, h, b: [{"params": m.fc.parameters(), "lr": h}, {"params": m.layer1.parameters()}], "group 1 has no 'lr'"),
    (C.param_groups, lambda m, h, b: [{"params": m.fc.parameters(), "lr": 1e-3},
                      {"params": [p for n, p in m.named_parameters() if not n.startswith("fc.")], "lr": 1e-4}], "expected body_lr = 0.002"),  # hard-coded rates fail the second round
]


# ----------------------------------------------------------------------------- 3. feature loop
def loop_in_train_mode(backbone, loader):
    with torch.no_grad():
        return torch.cat([backbone(x) for x, _ in loader])


def loop_without_no_grad(backbone, loader):
    backbone.eval()
    return torch.cat([backbone(x) for x, _ in loader])


def loop_keeping_the_last_batch(backbone, loader):
    backbone.eval()
    with torch.no_grad():
        for x, _ in loader:
            out = backbone(x)
    return out


def loop_returning_a_list(backbone, loader):
    backbone.eval()
    with torch.no_grad():
        return [backbone(x) for x, _ in loader]


WRONG_ANSWERS += [
    (C.feature_loop, loop_in_train_mode, "BatchNorm running_mean of bn1 changed: the backbone ran in train mode"),
    (C.feature_loop, loop_without_no_grad, "the features carry an autograd graph"),
    (C.feature_loop, loop_keeping_the_last_batch, "expected features of shape (10, 512) (one row per image), got (2, 512)"),
    (C.feature_loop, loop_returning_a_list, "not a list of batches"),
]


# ----------------------------------------------------------------------------- 4. replace the head
def resnet_only(model, n):
    model.fc = nn.Linear(model.fc.in_features, n)
    return model


def hard_coded_fc(model, n):
    model.fc = nn.Linear(512, n)
    return model


def rebuilt_model(model, n):
    return tvm.resnet18(weights=None, num_classes=n) if isinstance(model, tvm.ResNet) else model


def whole_classifier(model, n):
    if isinstance(model, tvm.ResNet):
        model.fc = nn.Linear(model.fc.in_features, n)
    else:
        model.classifier = nn.Linear(model.classifier[0].in_features, n)
    return model


def stacked_layer(model, n):
    if isinstance(model, tvm.ResNet):
        model.fc = nn.Linear(model.fc.in_features, n)
    else:
        model.classifier.append(nn.Linear(1000, n))
    return model


WRONG_ANSWERS += [
    (C.replace_head, resnet_only, "mobilenet_v3_small: your function raised AttributeError"),
    (C.replace_head, hard_coded_fc, ("mobilenet_v3_small: the model outputs 1000 classes, expected 7. The data never reaches your layer: "
                     "this model's last layer is model.classifier[3]")),
    (C.replace_head, rebuilt_model, "resnet18: conv1.weight changed. Keep every pretrained layer"),
    (C.replace_head, whole_classifier, "mobilenet_v3_small: classifier.0.weight is gone from the model"),
    (C.replace_head, stacked_layer, "rather than stacking a new one on top"),
]


# ----------------------------------------------------------------------------- 5. the recipe
def the_recipe_as_written(model, loader, num_classes, epochs):
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=0.001)
    for _ in range(epochs):
        for inputs, labels in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
    return model


def eval_but_not_frozen(model, loader, num_classes, epochs):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    for _ in range(epochs):
        for inputs, labels in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
    return model


def never_steps(model, loader, num_classes, epochs):
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.eval()
    for inputs, labels in loader:
        model(inputs)
    return model


def forgets_the_head(model, loader, num_classes, epochs):
    for param in model.parameters():
        param.requires_grad = False
    return model


WRONG_ANSWERS += [
    (C.fix_recipe, the_recipe_as_written, "BatchNorm running_mean of bn1 changed: the frozen backbone ran in train mode"),
    (C.fix_recipe, eval_but_not_frozen, "conv1.weight is trainable"),
    (C.fix_recipe, never_steps, "the head did not change"),
    (C.fix_recipe, forgets_the_head, "model.fc should be a new Linear layer with 3 outputs"),
]


@pytest.mark.parametrize("challenge, wrong, message", WRONG_ANSWERS,
                         ids=[f"{c.name}-{i}" for i, (c, _, _) in enumerate(WRONG_ANSWERS)])
def test_a_wrong_answer_fails_with_a_message_that_names_the_problem(challenge, wrong, message, capsys):
    ok, out = verdict(challenge, wrong, capsys)
    assert ok is False and message in out, out


def test_every_challenge_is_tried_with_at_least_two_wrong_answers():
    tried = [C.freeze_head] * len(FREEZE_HEAD_WRONG) + [c for c, _, _ in WRONG_ANSWERS]
    for challenge in C.ALL:
        assert tried.count(challenge) >= 2, f"{challenge.name}: fewer than two wrong answers tested"


def test_the_checks_download_nothing_and_reuse_their_models():
    before = C._prototype.cache_info().misses
    C._model("resnet18")
    C._model("resnet18")
    assert C._prototype.cache_info().misses <= before + 1
    assert "pretrained=True" in C.RECIPE  # the recipe is shown as the cheatsheet writes it
