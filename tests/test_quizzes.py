import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import xferlib as xl
import importlib

cli = importlib.import_module("xferlib.quiz")
from xferlib import quizzes as Q

REPO = Path(__file__).resolve().parent.parent
BANKS = sorted((REPO / "quizzes").glob("*.yml"))

GOOD = """
title: Demo bank
questions:
  - prompt: Which part does feature extraction train?
    kind: single
    choices: [The whole network, Only the new head, Only BatchNorm]
    answer: 1
    explanation: The backbone is frozen; only the head learns.
  - prompt: Which of these keep a BatchNorm layer's statistics fixed?
    kind: multiple
    choices: [model.eval() on the layer, requires_grad = False, xl.freeze]
    answer: [0, 2]
    explanation: Running statistics are buffers, not parameters.
  - prompt: How many classes does ImageNet-1k have?
    kind: numeric
    answer: 1000
    tolerance: 0
    explanation: One thousand.
"""


def write(tmp_path, text, name="demo"):
    path = tmp_path / f"{name}.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_bank_loads(tmp_path):
    bank = xl.load_bank("demo", root=write(tmp_path, GOOD).parent)
    assert bank.title == "Demo bank" and len(bank) == 3
    single, multiple, numeric = bank.questions
    assert single.check(1) and not single.check(0) and not single.check("x")
    assert multiple.check([2, 0]) and not multiple.check([0]) and not multiple.check([0, 1, 2])
    assert numeric.check(1000) and numeric.check("1000") and not numeric.check(999)
    assert multiple.answer_text() == "model.eval() on the layer; xl.freeze"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("    answer: 1\n", "    answer: 3\n", r"question 1 \('Which part.*answer 3 is out of range for 3 choices"),
        ("    answer: [0, 2]", "    answer: [0, 0]", r"question 2.*repeats an index"),
        ("    answer: [0, 2]", "    answer: 2", r"question 2.*non-empty list"),
        ("    kind: single", "    kind: essay", r"question 1.*kind 'essay'"),
        ("    explanation: One thousand.", "    explanation: ''", r"question 3.*'explanation' must be non-empty"),
        ("    answer: 1000", "    answer: lots", r"question 3.*must be a number"),
        ("    tolerance: 0", "    tolerance: -1", r"question 3.*tolerance"),
        ("    answer: 1\n", "    answer: 1\n    hint: none\n", r"question 1.*unknown key\(s\) hint"),
        ("[The whole network, Only the new head, Only BatchNorm]", "[Same, Same]", r"question 1.*same"),
        ("title: Demo bank\n", "", r"missing 'title'"),
    ],
)
def test_faults_name_the_file_and_question(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1), "broken")
    with pytest.raises(xl.QuizError, match=message) as info:
        xl.load_bank(path)
    assert "broken.yml" in str(info.value)


def test_invalid_yaml_and_missing_bank(tmp_path):
    bad = write(tmp_path, "title: [unclosed\nquestions: -", "garbled")
    with pytest.raises(xl.QuizError, match="garbled.yml: not valid YAML"):
        xl.load_bank(bad)
    with pytest.raises(xl.QuizError, match="nope.yml: no such quiz bank"):
        xl.load_bank("nope", root=tmp_path)


def test_yaml_is_parsed_safely(tmp_path):
    path = write(tmp_path, "title: !!python/object/apply:os.system ['echo hi']\nquestions: []\n", "unsafe")
    with pytest.raises(xl.QuizError, match="unsafe.yml"):
        xl.load_bank(path)


def test_text_rendering_lists_questions_then_answers(tmp_path):
    bank = xl.load_bank(write(tmp_path, GOOD))
    text = Q.bank_text(bank)
    assert text.index("1. Which part") < text.index("Answers") < text.index("1. b) Only the new head —")
    assert "a, c) model.eval()" in text


def test_quiz_prints_text_outside_a_kernel(tmp_path, capsys):
    write(tmp_path, GOOD)
    xl.quiz("demo", root=tmp_path)
    assert "Quiz: Demo bank (3 questions)" in capsys.readouterr().out


def test_xl_quiz_stays_callable_after_the_cli_module_is_imported(tmp_path, capsys):
    import xferlib

    write(tmp_path, GOOD)
    xferlib.quiz("demo", root=tmp_path)  # may now be the module itself
    assert "Quiz: Demo bank" in capsys.readouterr().out


def test_widget_gives_feedback_and_keeps_score(tmp_path):
    bank = xl.load_bank(write(tmp_path, GOOD))
    box = Q._widget(bank)
    items = box.children[1:-1]
    score = box.children[-1]
    assert "0 / 3" in score.value
    single = items[0]
    radio, (button, feedback) = single.children[1], single.children[2].children
    radio.value = 0
    button.click()
    assert "Not quite" in feedback.value and "only the head learns" in feedback.value
    radio.value = 1
    button.click()
    assert "Right" in feedback.value and "1 / 3" in score.value
    numeric = items[2]
    numeric.children[1].value = "1000"
    numeric.children[2].children[0].click()
    assert "2 / 3" in score.value
    bundle = box._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Quiz: Demo bank")
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_terminal_drill_scores_by_topic(tmp_path):
    bank = xl.load_bank(write(tmp_path, GOOD))
    answers = iter(["zz", "b", "a", "1000"])
    lines = []
    results = cli.drill([(bank.title, q) for q in bank.questions], ask=lambda _: next(answers), out=lines.append)
    assert results == {"Demo bank": [True, False, True]}
    assert any("try again" in l for l in lines)
    assert cli.report(results, out=lines.append) == pytest.approx(2 / 3)
    assert "Total: 2/3 (67%)" in lines[-1]


def test_command_line_drill_and_check(tmp_path):
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("Demo bank", "Second bank"), "second")
    run = lambda *args, stdin="": subprocess.run(  # noqa: E731
        [sys.executable, "-m", "xferlib.quiz", "--root", str(tmp_path), *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    out = run("demo", stdin="b\na,c\n1000\n")
    assert out.returncode == 0 and "Total: 3/3 (100%)" in out.stdout
    out = run("--all", "--random", "4", "--seed", "1", stdin="q\n")
    assert out.returncode == 0 and "[1/4]" in out.stdout
    assert run("--check").stdout.strip() == "2 bank(s), 6 questions: all valid"
    write(tmp_path, GOOD.replace("answer: 1\n", "answer: 9\n"), "third")
    out = run("--check")
    assert out.returncode == 2 and "third.yml, question 1" in out.stderr


@pytest.mark.parametrize("path", BANKS, ids=[p.stem for p in BANKS])
def test_course_bank_is_valid(path):
    bank = xl.load_bank(path)
    assert len(bank) >= 8, f"{path.name}: a lesson's bank needs at least 8 questions"
    notebook = REPO / "notebooks" / f"{path.stem}.ipynb"
    assert notebook.exists(), f"{path.name} has no notebook {notebook.name}"
