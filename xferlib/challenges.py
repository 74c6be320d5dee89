"""Code challenges for interview practice, in the style of Kaggle's learntools.

Each challenge states a task. Write a function, then hand it to the challenge::

    from xferlib import challenges
    challenges.freeze_head                        # shows the task
    def freeze_all_but_head(model): ...
    challenges.freeze_head.check(freeze_all_but_head)   # prints a verdict, returns True/False
    challenges.freeze_head.hint()
    challenges.freeze_head.solution()

The checkers run your function on small, randomly initialised torchvision models (nothing
is downloaded) and a few random images, in well under a second, and say what is wrong:
which tensor is still trainable, which BatchNorm layer's statistics moved, and so on.

Each challenge carries its reference solution (``challenge.reference``, the function that
``solution()`` prints) and the wrong answers learners often write (``challenge.mistakes``): a
:class:`Mistake` holds the wrong function and a pattern of what the checker says about it.
The tests run both, so every message a learner can get has been seen to fire.

If your function raises, the verdict says so and names the line of your code. If the checker
itself breaks (a bug, a broken install), it says that instead, and does not blame you.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
import sysconfig
import textwrap
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .freezing import BATCHNORM

__all__ = ["ALL", "RECIPE", "Challenge", "Mistake", "Wrong",
           "feature_loop", "fix_recipe", "freeze_head", "param_groups", "replace_head"]


class Wrong(Exception):
    """A check failed; the message says what is wrong and how to put it right."""


class _NotWritten(Exception):
    """The learner's function is still the exercise stub (it raised NotImplementedError)."""


@dataclass(frozen=True)
class Mistake:
    """A wrong answer learners often write. ``says`` is a regular expression that the checker's
    message about it must match; the function's docstring names the misconception."""

    name: str
    function: Callable
    says: str

    def __repr__(self) -> str:
        doc = (self.function.__doc__ or "").strip()
        return f"Mistake({self.name}: {' '.join(doc.split())})"


def _mistakes(*pairs: tuple[Callable, str]) -> list[Mistake]:
    """``(function, says)`` pairs as Mistakes named after their functions."""
    return [Mistake(function.__name__, function, says) for function, says in pairs]


@dataclass(eq=False)
class Challenge:
    name: str
    task: str
    hint_text: str
    reference: Callable
    checker: Callable
    mistakes: list[Mistake] = field(default_factory=list)
    praise: str = ""

    def check(self, answer) -> bool:
        """Run ``answer`` through the checker; print a verdict and return whether it passed."""
        try:
            if not callable(answer):
                raise Wrong(f"check() takes your function itself, e.g. check({self.reference.__name__}), "
                            f"not a {type(answer).__name__}")
            self.checker(answer)
        except _NotWritten:
            print(f"… {self.name}: not written yet. Write the function, run the cell again (stuck? .hint()).")
            return False
        except Wrong as err:
            print(f"✘ {self.name}: {err}")
            return False
        except Exception as err:  # every call into the learner's code is wrapped: this one is ours
            print(f"⚠ {self.name}: the checker itself failed: {_describe(err)}{_at(err, in_checker=True)} "
                  "(not a problem with your code; please report it)")
            return False
        print(f"✔ {self.name}: correct. {self.praise}".rstrip())
        return True

    def hint(self) -> None:
        print(f"Hint ({self.name}): {self.hint_text}")

    @property
    def solution_text(self) -> str:
        """The source of the reference solution, the very function the tests check."""
        return textwrap.dedent(inspect.getsource(self.reference)).strip()

    def solution(self) -> None:
        print(f"Solution ({self.name}):\n{self.solution_text}")

    def __repr__(self) -> str:
        return f"Challenge: {self.name}\n{textwrap.fill(self.task, 96)}"


# --------------------------------------------------------------------------- whose error is it?
_LIBRARIES = tuple(os.path.join(os.path.realpath(d), "") for d in {
    *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")),
    os.path.dirname(torch.__file__), os.path.dirname(__file__)})


def _learners(filename: str) -> bool:
    """Whether a traceback frame runs the learner's code. This file counts as the learner's: the
    references and mistakes below are the only code of it that runs inside a call to _call."""
    path = os.path.realpath(filename)
    return path == os.path.realpath(__file__) or not path.startswith(_LIBRARIES)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _at(err: BaseException, in_checker: bool = False) -> str:
    """Where ``err`` was raised: the last frame of the learner's code, or the checker's last frame."""
    frames = traceback.extract_tb(err.__traceback__)
    if in_checker:
        return f", in {os.path.basename(frames[-1].filename)} line {frames[-1].lineno}" if frames else ""
    frames = [f for f in frames[1:] if _learners(f.filename)]  # frames[0] is _call itself
    if not frames:
        return ""
    line = frames[-1].line.strip() if frames[-1].line else ""
    return f", at line {frames[-1].lineno} of your code" + (f": `{line}`" if line else "")


def _call(fn: Callable, *args):
    """Every call into the learner's code goes through here: what it raises becomes a verdict
    that says what and where, so that any other exception is the checker's own."""
    try:
        return fn(*args)
    except NotImplementedError as err:
        last = traceback.extract_tb(err.__traceback__)[-1]
        if last.name != "_call" and _learners(last.filename):  # raised by the learner: the exercise's stub
            raise _NotWritten from None
        raise Wrong(f"your function raised {_describe(err)}{_at(err)}") from None
    except Exception as err:
        raise Wrong(f"your function raised {_describe(err)}{_at(err)}") from None


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


# --------------------------------------------------------------------------- test material
ARCHITECTURES = {  # torchvision builder -> where its last (classifying) layer lives
    "resnet18": "fc",
    "mobilenet_v3_small": "classifier.3",
    "efficientnet_b0": "classifier.1",
}


@functools.cache
def _prototype(arch: str, num_classes: int = 1000) -> nn.Module:
    """A torchvision model with random weights (never downloaded) whose BatchNorm layers
    carry non-trivial running statistics, as pretrained ones do. Built once, then copied."""
    import torchvision.models as tvm

    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = getattr(tvm, arch)(weights=None, num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, BATCHNORM):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def _model(arch: str = "resnet18", num_classes: int = 1000, head: int | None = None) -> nn.Module:
    """A fresh copy of the prototype in train mode (as torchvision's constructors leave it),
    optionally with a new ``fc`` head of ``head`` classes."""
    model = copy.deepcopy(_prototype(arch, num_classes)).train()
    if head is not None:
        model.fc = nn.Linear(model.fc.in_features, head)
    return model


def _images(n: int, seed: int = 0, side: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _loader(n: int, classes: int, batch_size: int = 4, seed: int = 0) -> DataLoader:
    labels = torch.arange(n) % classes
    return DataLoader(TensorDataset(_images(n, seed), labels), batch_size=batch_size, shuffle=False)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def _result(returned, given: nn.Module) -> nn.Module:
    model = given if returned is None else returned
    if not isinstance(model, nn.Module):
        raise Wrong(f"expected the function to return the model (or None), got a {type(returned).__name__}")
    return model


def _first_change(before: dict, model: nn.Module, skip: str = "fc.") -> str | None:
    """A message naming the first tensor (outside ``skip``) that differs from ``before``."""
    after = model.state_dict()
    for name, old in before.items():
        if name.startswith(skip):
            continue
        if name not in after:
            return f"{name} is gone from the model"
        if not torch.equal(old, after[name]):
            layer, _, kind = name.rpartition(".")
            if kind in ("running_mean", "running_var", "num_batches_tracked"):
                return f"BatchNorm {kind} of {layer} changed"
            return f"{name} changed"
    return None


# --------------------------------------------------------------------------- 1. freeze all but the head
def _check_freeze_head(fn):
    model = _model(head=10)
    model = _result(_call(fn, model), model)
    if not isinstance(getattr(model, "fc", None), nn.Linear) or model.fc.out_features != 10:
        raise Wrong("model.fc should still be the 10-class head it was given; only change requires_grad")
    frozen_head = [n for n, p in model.fc.named_parameters() if not p.requires_grad]
    still = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
    switches = [(f"model.{n}".rstrip("."), vars(m)["requires_grad"])
                for n, m in model.named_modules() if "requires_grad" in vars(m)]
    if switches and (frozen_head or still):
        where, value = switches[0]
        raise Wrong(f"{where}.requires_grad = {value} only sets a plain Python attribute on the module: a module "
                    f"has no such switch, so no parameter changed. Call {where}.requires_grad_({value}), with the "
                    "underscore, or set requires_grad on each of its parameters")
    if not model.training and all(p.requires_grad for p in model.parameters()):
        raise Wrong("nothing is frozen: model.eval() does not freeze weights, it only switches BatchNorm and "
                    "Dropout to inference behaviour. The optimizer updates every parameter whose requires_grad "
                    "is True: set it to False on the body's parameters")
    if frozen_head:
        name = frozen_head[0]
        if not any(p.requires_grad for p in model.parameters()):
            raise Wrong(f"every parameter is frozen, the new head's too (fc.{name}.requires_grad is False), "
                        "so nothing would learn: skip the parameters whose names start with 'fc.'")
        raise Wrong(f"the head's {name} is frozen (fc.{name}.requires_grad is False): the new layer must learn")
    if still:
        advice = "set requires_grad = False on every parameter outside model.fc"
        if all(isinstance(model.get_submodule(n.rpartition(".")[0]), BATCHNORM) for n in still):
            advice = ("all of them belong to BatchNorm layers, whose weight and bias are learnable parameters "
                      "too: freeze every parameter outside model.fc, not only the convolutions")
        raise Wrong(f"{len(still)} tensors of the body are still trainable, the first is {still[0]}; {advice}")


def freeze_all_but_head(model):
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("fc.")
    return model


def froze_the_head_too(model):
    """Freezes every parameter: the new head cannot learn either."""
    for param in model.parameters():
        param.requires_grad = False
    return model


def switch_on_the_module(model):
    """Unfreezes the head with model.fc.requires_grad = True: a plain attribute, not a switch."""
    for param in model.parameters():
        param.requires_grad = False
    model.fc.requires_grad = True
    return model


def froze_only_the_convolutions(model):
    """Freezes the convolution weights only, forgetting BatchNorm's learnable weight and bias."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.requires_grad = False
    return model


def eval_instead_of_freezing(model):
    """Believes that model.eval() freezes the weights."""
    model.eval()
    return model


freeze_head = Challenge(
    name="Freeze all but the head",
    task="Write freeze_all_but_head(model): `model` is a pretrained torchvision ResNet whose head `model.fc` "
         "was just replaced. Make every parameter of the body untrainable and leave the head trainable. "
         "Change the model in place; returning it is optional.",
    hint_text="model.named_parameters() gives (name, parameter) pairs; the head's names start with 'fc.'. "
              "Setting param.requires_grad is all it takes.",
    reference=freeze_all_but_head,
    checker=_check_freeze_head,
    mistakes=_mistakes(
        (froze_the_head_too, r"every parameter is frozen, the new head's too"),
        (switch_on_the_module,
         r"model\.fc\.requires_grad = True only sets a plain Python attribute.*requires_grad_\(True\)"),
        (froze_only_the_convolutions,
         r"still trainable, the first is bn1\.weight; all of them belong to BatchNorm layers"),
        (eval_instead_of_freezing, r"nothing is frozen: model\.eval\(\) does not freeze"),
    ),
    praise="Only fc.weight and fc.bias train. Remember that requires_grad alone lets BatchNorm "
           "statistics drift in train mode (challenges 3 and 5).",
)


# --------------------------------------------------------------------------- 2. param groups
def _params(group: dict, number: int) -> list:
    params = group["params"]
    if isinstance(params, torch.Tensor):
        return [params]
    if not isinstance(params, Iterable):
        raise Wrong(f"group {number}'s 'params' is a {type(params).__name__}, not a list of parameters")
    return _call(list, params)  # a generator runs the learner's code


def _check_param_groups(fn):
    for head_lr, body_lr in [(1e-3, 1e-4), (0.05, 0.002)]:
        model = _model(head=10)
        for p in model.conv1.parameters():  # a frozen stem: those may be left out
            p.requires_grad_(False)
        groups = _call(fn, model, head_lr, body_lr)
        if not isinstance(groups, Iterable) or isinstance(groups, (dict, str, torch.Tensor)):
            raise Wrong("expected a list of dicts like {'params': [...], 'lr': ...}, "
                        f"got a {type(groups).__name__}")
        groups = _call(list, groups)
        if not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
            got = type(groups[0]).__name__ if groups else "an empty list"
            raise Wrong(f"expected a list of dicts like {{'params': [...], 'lr': ...}}, got a list of {got}")
        names = {id(p): n for n, p in model.named_parameters()}
        seen: dict[int, float] = {}
        for number, group in enumerate(groups):
            group["params"] = params = _params(group, number)
            if "lr" not in group:
                raise Wrong(f"group {number} has no 'lr', so it would get the optimizer's default rate")
            if isinstance(group["lr"], bool) or not isinstance(group["lr"], (int, float)):
                raise Wrong(f"group {number}'s 'lr' is {group['lr']!r}, not a number")
            for p in params:
                if id(p) not in names:
                    raise Wrong(f"group {number} holds a tensor that is not a parameter of the model")
                if id(p) in seen:
                    why = (": model.parameters() includes the head, so it cannot be the body's group; pick the "
                           "body's parameters by name" if names[id(p)].startswith("fc.") else "")
                    raise Wrong(f"{names[id(p)]} is in two groups; PyTorch refuses that "
                                f"('some parameters appear in more than one parameter group'){why}")
                seen[id(p)] = group["lr"]
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for name, p in trainable.items():
            if id(p) not in seen:
                part = "the new head" if name.startswith("fc.") else "it"
                raise Wrong(f"{name} is in no group, so the optimizer would never update {part}")
        head = {seen[id(p)] for n, p in trainable.items() if n.startswith("fc.")}
        body = {seen[id(p)] for n, p in trainable.items() if not n.startswith("fc.")}
        if len(head | body) == 1:
            raise Wrong(f"head and body share one learning rate ({next(iter(head | body)):g}): the new head "
                        "needs the larger head_lr, the pretrained body the smaller body_lr, which keeps the "
                        "features it learned. Make two groups")
        if head == {body_lr} and body == {head_lr}:
            raise Wrong("the rates are swapped: the head would train at body_lr and the body at head_lr. The new, "
                        "randomly initialised head needs the larger rate; the pretrained body only small corrections")
        for name, p in trainable.items():
            want, arg = (head_lr, "head_lr") if name.startswith("fc.") else (body_lr, "body_lr")
            if not _same(seen[id(p)], want):
                fixed = ("; take the rates from the arguments head_lr and body_lr instead of writing numbers in "
                         "(the check calls your function with other rates too)"
                         if not any(_same(seen[id(p)], r) for r in (head_lr, body_lr)) else "")
                raise Wrong(f"the {'head' if arg == 'head_lr' else 'body'} ({name}) would train at lr "
                            f"{seen[id(p)]:g}, expected {arg} = {want:g}{fixed}")
        try:
            torch.optim.AdamW(groups)  # the groups must be accepted by a real optimizer
        except Exception as err:
            raise Wrong(f"torch.optim.AdamW refuses these groups: {_describe(err)}") from None


def make_param_groups(model, head_lr, body_lr):
    head = [p for p in model.fc.parameters() if p.requires_grad]
    body = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("fc.")]
    return [{"params": head, "lr": head_lr}, {"params": body, "lr": body_lr}]


def one_rate_for_everything(model, head_lr, body_lr):
    """One group, one learning rate for the new head and the pretrained body."""
    return [{"params": model.parameters(), "lr": head_lr}]


def head_in_the_body_group(model, head_lr, body_lr):
    """Builds the body's group from model.parameters(), which holds the head too."""
    return [{"params": model.fc.parameters(), "lr": head_lr}, {"params": model.parameters(), "lr": body_lr}]


def head_left_out(model, head_lr, body_lr):
    """Gives the body its group and forgets the new head."""
    return [{"params": [p for n, p in model.named_parameters() if not n.startswith("fc.")], "lr": body_lr}]


def rates_swapped(model, head_lr, body_lr):
    """Gives the pretrained body the large rate and the new head the small one."""
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
    return [{"params": model.fc.parameters(), "lr": body_lr}, {"params": body, "lr": head_lr}]


def hard_coded_rates(model, head_lr, body_lr):
    """Writes the rates in as numbers and ignores the arguments."""
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
    return [{"params": model.fc.parameters(), "lr": 1e-3}, {"params": body, "lr": 1e-4}]


param_groups = Challenge(
    name="Param groups",
    task="Write make_param_groups(model, head_lr, body_lr): return a list of optimizer parameter groups "
         "(dicts with 'params' and 'lr') that train the head `model.fc` at head_lr and every other trainable "
         "parameter at body_lr, each parameter in exactly one group. Frozen parameters may be left out. "
         "The result goes straight into torch.optim.AdamW(groups).",
    hint_text="Two groups: [p for p in model.fc.parameters()] and the trainable parameters whose names do not "
              "start with 'fc.'. model.parameters() includes the head, so it cannot be the body's group.",
    reference=make_param_groups,
    checker=_check_param_groups,
    mistakes=_mistakes(
        (one_rate_for_everything, r"head and body share one learning rate \(0\.001\)"),
        (head_in_the_body_group, r"fc\.weight is in two groups.*model\.parameters\(\) includes the head"),
        (head_left_out, r"fc\.weight is in no group, so the optimizer would never update the new head"),
        (rates_swapped, r"the rates are swapped"),
        (hard_coded_rates,
         r"the body \(bn1\.weight\) would train at lr 0\.0001, expected body_lr = 0\.002; "
         r"take the rates from the arguments"),
    ),
    praise="The body learns slowly, the new head fast (xl.param_groups does this, per stage with stage_decay).",
)


# --------------------------------------------------------------------------- 3. feature-extraction loop
def _check_feature_loop(fn):
    backbone = _model()
    backbone.fc = nn.Identity()
    backbone.train()  # as torchvision's constructors leave it
    loader = _loader(10, 2, batch_size=4)  # three batches, the last one short
    before = _snapshot(backbone)
    with torch.no_grad():
        reference = copy.deepcopy(backbone).eval()(torch.cat([x for x, _ in loader]))
    feats = _call(fn, backbone, loader)
    changed = _first_change(before, backbone, skip="\0")
    if changed:
        raise Wrong(f"{changed}: the backbone ran in train mode. Call backbone.eval() before the loop "
                    "(BatchNorm then uses, and keeps, its running statistics)")
    if isinstance(feats, (list, tuple)):
        raise Wrong("return one tensor [N, F], not a list of batches: torch.cat them")
    if not isinstance(feats, torch.Tensor):
        raise Wrong(f"expected a tensor of features, got a {type(feats).__name__}")
    if feats.shape != reference.shape:
        hint = " Did you keep only some of the batches?" if feats.dim() == 2 and feats.shape[0] < len(reference) else ""
        raise Wrong(f"expected features of shape {tuple(reference.shape)} (one row per image), got {tuple(feats.shape)}.{hint}")
    if feats.requires_grad:
        raise Wrong("the features carry an autograd graph (requires_grad=True): run the loop under "
                    "torch.no_grad() or torch.inference_mode(); a graph per batch wastes memory and time")
    if not torch.allclose(feats.float(), reference, atol=1e-4, rtol=1e-4):
        raise Wrong("the features differ from the eval-mode backbone's output for the same images, in the same "
                    "order. Pass the images on as the loader gives them: it already normalises them the way the "
                    "backbone was trained (ImageNet mean and std), and statistics of your own change the input")


def extract_features(backbone, loader):
    backbone.eval()
    feats = []
    with torch.no_grad():
        for images, _ in loader:
            feats.append(backbone(images))
    return torch.cat(feats)


def forgot_eval(backbone, loader):
    """Turns off gradients but leaves the backbone in train mode: BatchNorm statistics drift."""
    with torch.no_grad():
        return torch.cat([backbone(images) for images, _ in loader])


def forgot_no_grad(backbone, loader):
    """Runs in eval mode but with autograd on: every batch builds a graph."""
    backbone.eval()
    return torch.cat([backbone(images) for images, _ in loader])


def kept_only_the_last_batch(backbone, loader):
    """Overwrites the features in the loop instead of collecting them."""
    backbone.eval()
    with torch.no_grad():
        for images, _ in loader:
            feats = backbone(images)
    return feats


def returned_the_batches(backbone, loader):
    """Returns the list of per-batch tensors, not one tensor."""
    backbone.eval()
    with torch.no_grad():
        return [backbone(images) for images, _ in loader]


def normalised_each_batch_again(backbone, loader):
    """Standardises each batch with its own mean and std: not the input the backbone was trained on."""
    backbone.eval()
    feats = []
    with torch.no_grad():
        for images, _ in loader:
            feats.append(backbone((images - images.mean()) / images.std()))
    return torch.cat(feats)


feature_loop = Challenge(
    name="Feature-extraction loop",
    task="Write extract_features(backbone, loader): run a frozen pretrained backbone over every batch of "
         "`loader` (batches of (images, labels)) and return the features of all images as one tensor [N, F], "
         "in order. The backbone arrives in train mode, as torchvision's constructors leave it; every tensor "
         "in it, BatchNorm statistics included, must come out as it went in, and no autograd graph may be built.",
    hint_text="Two lines around the loop: backbone.eval() (BatchNorm stops updating its running mean and "
              "variance) and `with torch.no_grad():`. Collect the batches in a list and torch.cat them.",
    reference=extract_features,
    checker=_check_feature_loop,
    mistakes=_mistakes(
        (forgot_eval, r"BatchNorm running_mean of bn1 changed: the backbone ran in train mode"),
        (forgot_no_grad, r"the features carry an autograd graph"),
        (kept_only_the_last_batch,
         r"expected features of shape \(10, 512\) \(one row per image\), got \(2, 512\)\. Did you keep only some"),
        (returned_the_batches, r"not a list of batches: torch\.cat them"),
        (normalised_each_batch_again, r"the features differ .* Pass the images on as the loader gives them"),
    ),
    praise="BatchNorm statistics untouched, no graphs kept. xl.extract_features also restores the mode afterwards.",
)


# --------------------------------------------------------------------------- 4. replace the head
def _python(path: str) -> str:
    """'classifier.3' as Python spells it: 'classifier[3]'."""
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in path.split(".")).lstrip(".")


def _check_replace_head(fn):
    num_classes = 7
    for arch, path in ARCHITECTURES.items():
        model = _model(arch)
        old, last = model.get_submodule(path), f"model.{_python(path)}"
        before = _snapshot(model)
        try:
            returned = _call(fn, model, num_classes)
        except Wrong as err:
            raise Wrong(f"{arch}: {err}. print(model) shows where this architecture keeps its last layer") from None
        model = _result(returned, model)
        model.eval()
        try:
            with torch.no_grad():
                out = model(_images(2))
        except Exception as err:
            raise Wrong(f"{arch}: a forward pass fails ({_describe(err)}); the new layer must take the "
                        f"{old.in_features} inputs the old last layer took: read them from its in_features "
                        "instead of writing a number in") from None
        try:
            new = model.get_submodule(path)
        except AttributeError:
            new = None
        if new is old and old.out_features == num_classes != old.weight.shape[0]:
            raise Wrong(f"{arch}: {last} is still the old layer with its {old.weight.shape[0]} rows of ImageNet "
                        "weights: setting out_features only changes a number, not the weight. Put a new "
                        f"nn.Linear({old.in_features}, num_classes) in its place")
        if out.shape[-1] != num_classes:
            where = ""
            if out.shape[-1] == old.out_features:
                where = f" The data never reaches your layer: this model's last layer is {last}."
            raise Wrong(f"{arch}: the model outputs {out.shape[-1]} classes, expected {num_classes}.{where}")
        changed = _first_change(before, model, skip=path + ".")
        if changed and "is gone" in changed:
            raise Wrong(f"{arch}: {changed}: a pretrained layer before the head was thrown away. Keep every "
                        f"pretrained layer before the head: replace only the last layer, {last}")
        if changed:
            raise Wrong(f"{arch}: {changed}: the layers before the head lost their pretrained weights (a newly "
                        "built model starts from random ones). Change the model you are given, only its last layer")
        if not isinstance(new, nn.Linear) or new.out_features != num_classes:
            raise Wrong(f"{arch}: {last} should now be a Linear layer with {num_classes} outputs; "
                        "replace the old last layer rather than stacking a new one on top")
        if not all(p.requires_grad for p in new.parameters()):
            raise Wrong(f"{arch}: the new layer {last} is frozen; it must be trainable")


def replace_classifier(model, num_classes):
    if isinstance(getattr(model, "fc", None), nn.Linear):        # ResNet
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:                                                        # MobileNetV3, EfficientNet
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return model


def assumed_every_model_has_fc(model, num_classes):
    """Writes the ResNet answer for every architecture."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def hard_coded_inputs(model, num_classes):
    """Gives the new layer ResNet-18's 512 inputs on every architecture."""
    if hasattr(model, "fc"):
        model.fc = nn.Linear(512, num_classes)
    else:
        model.classifier[-1] = nn.Linear(512, num_classes)
    return model


def changed_out_features(model, num_classes):
    """Sets out_features on the old layer, which keeps its 1000 rows of weights."""
    last = model.fc if hasattr(model, "fc") else model.classifier[-1]
    last.out_features = num_classes
    return model


def built_a_new_model(model, num_classes):
    """Builds a fresh network with num_classes outputs: the pretrained weights are gone."""
    import torchvision

    return torchvision.models.resnet18(num_classes=num_classes)


def replaced_the_whole_classifier(model, num_classes):
    """Replaces all of model.classifier, which holds pretrained layers before the last one."""
    if hasattr(model, "fc"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier = nn.Linear(model.classifier[0].in_features, num_classes)
    return model


def stacked_a_layer_on_top(model, num_classes):
    """Keeps the 1000-class layer and adds a new one after it."""
    if hasattr(model, "fc"):
        model.fc = nn.Sequential(model.fc, nn.Linear(1000, num_classes))
    else:
        model.classifier.append(nn.Linear(1000, num_classes))
    return model


replace_head = Challenge(
    name="Replace the head",
    task="Write replace_classifier(model, num_classes): give a torchvision classifier a new, trainable last "
         "layer with num_classes outputs, keeping every pretrained layer before it, and return the model. It "
         "must work for resnet18, mobilenet_v3_small and efficientnet_b0, which keep their last layer in "
         "different places.",
    hint_text="print(model) shows the end of each network: ResNets have model.fc; MobileNetV3 and EfficientNet "
              "have a Sequential model.classifier whose last element, model.classifier[-1], is the Linear layer. "
              "Read in_features from the old layer.",
    reference=replace_classifier,
    checker=_check_replace_head,
    mistakes=_mistakes(
        (assumed_every_model_has_fc,
         r"mobilenet_v3_small: your function raised AttributeError: .* at line \d+ of your code.*print\(model\)"),
        (hard_coded_inputs, r"mobilenet_v3_small: a forward pass fails .* must take the 1024 inputs"),
        (changed_out_features,
         r"resnet18: model\.fc is still the old layer .* setting out_features only changes a number"),
        (built_a_new_model, r"resnet18: conv1\.weight changed: .* lost their pretrained weights"),
        (replaced_the_whole_classifier,
         r"mobilenet_v3_small: classifier\.0\.weight is gone .* replace only the last layer, model\.classifier\[3\]"),
        (stacked_a_layer_on_top, r"resnet18: .* rather than stacking a new one on top"),
    ),
    praise="Three architectures, three places for the head; the pretrained layers before it are untouched.",
)


# --------------------------------------------------------------------------- 5. fix the cheatsheet recipe
RECIPE = """\
model = models.resnet50(pretrained=True)
for param in model.parameters():          # "Freeze all the layers"
    param.requires_grad = False
model.fc = nn.Linear(model.fc.in_features, num_classes)
optimizer = optim.Adam(model.fc.parameters(), lr=0.001)
for epoch in range(epochs):
    for inputs, labels in dataloader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()"""


_FROZEN_HEAD = ("The new head is frozen (model.fc.weight.requires_grad is False): the freezing loop ran after "
                "model.fc was replaced. Freeze first, then replace the head: a new layer starts trainable")


def _check_fix_recipe(fn):
    num_classes, epochs = 3, 2
    model = _model()
    loader = _loader(8, num_classes, batch_size=4)
    before = _snapshot(model)
    calls = {"forward": 0, "head": None, "error": None}

    def record(module, inputs):  # runs inside the learner's call: keep its own errors apart
        try:
            calls["forward"] += 1
            if calls["head"] is None and isinstance(getattr(module, "fc", None), nn.Linear):
                calls["head"] = module.fc.weight.detach().clone()
        except Exception as err:
            calls["error"] = calls["error"] or err

    hook = model.register_forward_pre_hook(record)
    try:
        returned = _call(fn, model, loader, num_classes, epochs)
    except Wrong as err:  # backward() through a frozen head raises: say why
        head = getattr(model, "fc", None)
        if isinstance(head, nn.Linear) and not any(p.requires_grad for p in head.parameters()):
            raise Wrong(f"{err}. {_FROZEN_HEAD}") from None
        raise
    finally:
        hook.remove()
    model = _result(returned, model)
    if calls["error"]:
        raise calls["error"]
    if not isinstance(getattr(model, "fc", None), nn.Linear) or model.fc.out_features != num_classes:
        got = f" (it has {model.fc.out_features})" if isinstance(getattr(model, "fc", None), nn.Linear) else ""
        raise Wrong(f"model.fc should be a new Linear layer with {num_classes} outputs{got}")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
    if trainable:
        raise Wrong(f"{trainable[0]} is trainable: the recipe freezes the whole backbone (requires_grad = False "
                    "on every parameter; model.eval() alone freezes nothing)")
    if not all(p.requires_grad for p in model.fc.parameters()):
        raise Wrong(_FROZEN_HEAD)
    changed = _first_change(before, model)
    if changed and "BatchNorm" in changed:
        raise Wrong(f"{changed}: the frozen backbone ran in train mode, so BatchNorm kept updating its "
                    "statistics. After model.train(), put the backbone back in eval mode (e.g. model.eval(); "
                    "model.fc.train()), or pin its BatchNorm layers with xl.freeze")
    if changed:
        raise Wrong(f"{changed}: the backbone must come out exactly as it went in")
    if calls["forward"] == 0:
        raise Wrong("the model never ran: train the head on the loader")
    if calls["head"] is not None and torch.equal(calls["head"], model.fc.weight.detach()):
        if model.fc.weight.grad is None:
            raise Wrong("the head never got a gradient, so optimizer.step() had nothing to apply: "
                        "call loss.backward() before optimizer.step()")
        raise Wrong("the head got gradients but never changed: the optimizer does not hold the new head's "
                    "parameters. Build the optimizer after replacing model.fc; one built before holds the old head's")


def train_head(model, loader, num_classes, epochs):
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    model.eval()                      # the fix: BatchNorm uses, and keeps, its running statistics
    for epoch in range(epochs):
        for inputs, labels in loader:
            optimizer.zero_grad()
            criterion(model(inputs), labels).backward()
            optimizer.step()
    return model


def _train(model, optimizer, loader, epochs, backward=True):
    """The recipe's training loop, shared by the wrong answers below."""
    for epoch in range(epochs):
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            if backward:
                loss.backward()
            optimizer.step()
    return model


def the_recipe_as_written(model, loader, num_classes, epochs):
    """Freezes the parameters but trains in train mode: BatchNorm statistics of the 'frozen' body drift."""
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return _train(model, torch.optim.Adam(model.fc.parameters(), lr=1e-3), loader, epochs)


def eval_without_freezing(model, loader, num_classes, epochs):
    """Calls model.eval() instead of freezing, and trains every parameter."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.eval()
    return _train(model, torch.optim.Adam(model.parameters(), lr=1e-3), loader, epochs)


def optimizer_before_the_new_head(model, loader, num_classes, epochs):
    """Builds the optimizer before replacing model.fc: it holds the old head's parameters."""
    for param in model.parameters():
        param.requires_grad = False
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.eval()
    return _train(model, optimizer, loader, epochs)


def froze_after_the_new_head(model, loader, num_classes, epochs):
    """Replaces model.fc first, then freezes every parameter, the new head's included."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    for param in model.parameters():
        param.requires_grad = False
    model.eval()
    return _train(model, torch.optim.Adam(model.fc.parameters(), lr=1e-3), loader, epochs)


def forgot_backward(model, loader, num_classes, epochs):
    """Computes the loss but never calls loss.backward()."""
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.eval()
    return _train(model, torch.optim.Adam(model.fc.parameters(), lr=1e-3), loader, epochs, backward=False)


def kept_the_old_head(model, loader, num_classes, epochs):
    """Freezes the body and fixes the mode but never replaces the 1000-class head."""
    for param in model.parameters():
        param.requires_grad = False
    model.eval()
    return model


fix_recipe = Challenge(
    name="Fix the cheatsheet's recipe",
    task="The cheatsheet's feature-extraction recipe (see challenges.RECIPE) freezes the parameters but "
         "leaves the model in train mode, so the BatchNorm statistics of its 'frozen' backbone drift. Write "
         "train_head(model, loader, num_classes, epochs): do what the recipe does (freeze the backbone, "
         "replace model.fc, train only the head with Adam at lr 1e-3 for `epochs` epochs on `loader`) and "
         "return the model, with a backbone that comes out bit for bit as it went in.",
    hint_text="requires_grad=False stops gradient updates, not BatchNorm's running statistics: they update on "
              "every forward pass in train mode. Call model.eval() (the head has no BatchNorm or dropout, so "
              "it trains the same), or model.train() then model.eval() on everything but the head.",
    reference=train_head,
    checker=_check_fix_recipe,
    mistakes=_mistakes(
        (the_recipe_as_written, r"BatchNorm running_mean of bn1 changed: the frozen backbone ran in train mode"),
        (eval_without_freezing, r"conv1\.weight is trainable: the recipe freezes the whole backbone"),
        (optimizer_before_the_new_head,
         r"the optimizer does not hold the new head's parameters\. Build the optimizer after replacing model\.fc"),
        (froze_after_the_new_head,
         r"does not require grad.*The new head is frozen .* Freeze first, then replace the head"),
        (forgot_backward, r"the head never got a gradient.*call loss\.backward\(\)"),
        (kept_the_old_head, r"model\.fc should be a new Linear layer with 3 outputs \(it has 1000\)"),
    ),
    praise="The backbone is bit for bit unchanged. (Faster still: extract the features once and train the head on them.)",
)

ALL = [freeze_head, param_groups, feature_loop, replace_head, fix_recipe]
