"""The code challenges: each checker passes its own reference solution and fails every known
mistake with the message written for it (the learner reads only the message, so the tests read
it too); a crash is blamed on whoever crashed, the learner's function or the checker."""

import inspect
import re
import textwrap

import pytest
import torch
from torch import nn

from xferlib import challenges as C

MISTAKES = [(c, m) for c in C.ALL for m in c.mistakes]


def verdict(challenge, fn, capsys):
    ok = challenge.check(fn)
    return ok, capsys.readouterr().out


def slug(challenge):
    return re.sub(r"\W+", "_", challenge.name.lower()).strip("_")


# ----------------------------------------------------------------------------- references and mistakes
@pytest.mark.parametrize("challenge", C.ALL, ids=[slug(c) for c in C.ALL])
def test_the_reference_solution_passes(challenge, capsys):
    ok, out = verdict(challenge, challenge.reference, capsys)
    assert ok is True, out
    assert out.startswith(f"✔ {challenge.name}: correct")


@pytest.mark.parametrize("challenge, mistake", MISTAKES, ids=[f"{slug(c)}-{m.name}" for c, m in MISTAKES])
def test_a_mistake_fails_with_the_feedback_written_for_it(challenge, mistake, capsys):
    ok, out = verdict(challenge, mistake.function, capsys)
    assert ok is False and out.startswith(f"✘ {challenge.name}: "), out
    assert re.search(mistake.says, out, re.S), f"{mistake.name}: expected /{mistake.says}/, got\n{out}"
    assert "checker itself failed" not in out
    # its own message, not one another mistake of the same challenge could also have produced
    others = [m.name for m in challenge.mistakes if m is not mistake and re.search(m.says, out, re.S)]
    assert others == [], f"{mistake.name}'s message also matches {others}"


@pytest.mark.parametrize("challenge", C.ALL, ids=[slug(c) for c in C.ALL])
def test_every_challenge_ships_a_reference_and_at_least_three_named_mistakes(challenge):
    assert callable(challenge.reference)
    assert len(challenge.mistakes) >= 3
    names = [m.name for m in challenge.mistakes]
    assert len(set(names)) == len(names)
    for m in challenge.mistakes:
        assert isinstance(m, C.Mistake) and m.name == m.function.__name__
        assert m.function.__doc__, f"{m.name}: say in its docstring which misconception it is"
        assert m.name in repr(m)
        re.compile(m.says)


@pytest.mark.parametrize("challenge", C.ALL, ids=[slug(c) for c in C.ALL])
def test_the_printed_solution_is_the_tested_reference(challenge, capsys):
    challenge.solution()
    out = capsys.readouterr().out
    source = textwrap.dedent(inspect.getsource(challenge.reference)).strip()
    assert out == f"Solution ({challenge.name}):\n{source}\n"
    assert source.startswith(f"def {challenge.reference.__name__}(")


def test_there_are_five_challenges_with_hints_and_tasks(capsys):
    assert len(C.ALL) >= 5
    for c in C.ALL:
        c.hint()
        c.solution()
        out = capsys.readouterr().out
        assert out.startswith(f"Hint ({c.name}):") and "Solution" in out and "def " in out
        assert repr(c).startswith(f"Challenge: {c.name}\n")


# ----------------------------------------------------------------------------- crashes: whose fault?
def test_an_unwritten_exercise_is_not_a_crash(capsys):
    def stub(*args):
        raise NotImplementedError("Exercise: your code here")

    ok, out = verdict(C.freeze_head, stub, capsys)
    assert ok is False and "not written yet" in out


def line_of(fn, text):
    """The line number of the first line of ``fn`` that contains ``text``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def divides_by_zero(model):
    for name, param in model.named_parameters():
        param.requires_grad = 1 / 0


def feeds_the_wrong_width(backbone, loader):
    backbone.eval()
    with torch.no_grad():
        return torch.cat([nn.Linear(3, 4)(images) for images, _ in loader])


def typo_in_a_generator(model, head_lr, body_lr):
    return [{"params": (p for n, p in model.named_parameters() if n.startwith("fc.")), "lr": head_lr}]


@pytest.mark.parametrize("challenge, fn, error, text", [
    (C.freeze_head, divides_by_zero, "ZeroDivisionError: division by zero", "1 / 0"),
    (C.feature_loop, feeds_the_wrong_width, "RuntimeError: mat1 and mat2 shapes cannot be multiplied", "nn.Linear(3, 4)"),
    (C.param_groups, typo_in_a_generator, "AttributeError: 'str' object has no attribute 'startwith'", "startwith"),
], ids=["in-its-body", "inside-pytorch", "in-a-generator-the-checker-consumes"])
def test_a_crash_in_the_learners_function_is_theirs_with_the_line(challenge, fn, error, text, capsys):
    ok, out = verdict(challenge, fn, capsys)
    assert ok is False and out.startswith(f"✘ {challenge.name}: your function raised {error}"), out
    assert f"at line {line_of(fn, text)} of your code" in out and text in out
    assert "checker" not in out


@pytest.mark.parametrize("broken", ["_model", "_first_change"])
def test_a_crash_in_the_checker_is_not_blamed_on_the_learner(broken, monkeypatch, capsys):
    def fails(*args, **kwargs):
        raise RuntimeError("simulated broken install")

    monkeypatch.setattr(C, broken, fails)  # before, then after, the learner's function has run
    ok, out = verdict(C.fix_recipe, C.fix_recipe.reference, capsys)
    assert ok is False
    assert out.startswith(f"⚠ {C.fix_recipe.name}: the checker itself failed: RuntimeError: simulated broken install")
    assert "(not a problem with your code; please report it)" in out
    assert "your function raised" not in out and "✘" not in out


def test_check_wants_the_function_itself(capsys):
    ok, out = verdict(C.freeze_head, "freeze_all_but_head", capsys)
    assert ok is False and "takes your function itself" in out and "checker" not in out


# ----------------------------------------------------------------------------- other wrong shapes
@pytest.mark.parametrize("challenge, wrong, message", [
    (C.freeze_head, lambda model: 42, "return the model (or None), got a int"),
    (C.param_groups, lambda m, h, b: list(m.parameters()), "got a list of Parameter"),
    (C.param_groups, lambda m, h, b: [{"params": m.fc.parameters(), "lr": h}, {"params": m.layer1.parameters()}],
     "group 1 has no 'lr'"),
    (C.param_groups, lambda m, h, b: {"params": m.parameters(), "lr": h}, "got a dict"),
], ids=["freeze-returns-an-int", "groups-are-parameters", "group-without-lr", "groups-is-one-dict"])
def test_a_wrong_shape_of_answer_is_named(challenge, wrong, message, capsys):
    ok, out = verdict(challenge, wrong, capsys)
    assert ok is False and message in out, out


def test_the_checks_download_nothing_and_reuse_their_models():
    before = C._prototype.cache_info().misses
    C._model("resnet18")
    C._model("resnet18")
    assert C._prototype.cache_info().misses <= before + 1
    assert "pretrained=True" in C.RECIPE  # the recipe is shown as the cheatsheet writes it
