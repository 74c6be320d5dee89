import html
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import xferlib as xl
from xferlib import quizzes as Q

REPO = Path(__file__).resolve().parent.parent
BANKS = sorted((REPO / "quizzes").glob("*.yml"))

GOOD = """
title: Demo bank
questions:
  - prompt: Which part does feature extraction train?
    kind: single
    choices:
      - text: The whole network
        feedback: That is full fine-tuning.
      - text: Only the new head
        feedback: Right, the backbone stays as downloaded.
      - text: Only BatchNorm
        feedback: Tuning only the normalisation layers is another method.
    answer: 1
    explanation: The backbone is frozen; only the head learns.
  - prompt: Which of these keep a BatchNorm layer's statistics fixed?
    kind: multiple
    choices:
      - text: model.eval() on the layer
        feedback: Right, eval mode only reads the running statistics.
      - text: requires_grad = False
        feedback: Statistics are buffers, not parameters, so this leaves them free.
      - text: xl.freeze
        feedback: Right, it pins the layer in eval mode.
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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    assert single.choices[1] == Q.Choice("Only the new head", "Right, the backbone stays as downloaded.")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("    answer: 1\n", "    answer: 3\n", r"question 1 \('Which part.*answer 3 is out of range for 3 choices"),
        ("    answer: [0, 2]", "    answer: [0, 0]", r"question 2.*repeats an index"),
        ("    answer: [0, 2]", "    answer: 2", r"question 2.*non-empty list"),
        ("    kind: single", "    kind: essay", r"question 1.*kind 'essay'"),
        ("    explanation: One thousand.", "    explanation: ''", r"question 3.*'explanation' must be non-empty"),
        ("    answer: 1000", "    answer: lots", r"question 3.*must be a finite number"),
        ("    tolerance: 0", "    tolerance: -1", r"question 3.*tolerance"),
        ("    answer: 1\n", "    answer: 1\n    hint: none\n", r"question 1.*unknown key\(s\) hint"),
        ("      - text: Only BatchNorm\n", "      - text: The whole network\n", r"question 1.*two choices are the same"),
        ("        feedback: That is full fine-tuning.\n", "        feedback: ' '\n", r"question 1.*choice a needs non-empty 'feedback'"),
        ("        feedback: That is full fine-tuning.\n", "", r"question 1.*choice a needs non-empty 'feedback'"),
        ("      - text: Only BatchNorm\n        feedback: Tuning only the normalisation layers is another method.\n",
         "      - Only BatchNorm\n", r"question 1.*choice c must be a mapping with 'text' and 'feedback'"),
        ("      - text: model.eval() on the layer\n", "      - text: model.eval() on the layer\n        hint: x\n", r"question 2.*choice a: unknown key\(s\) hint"),
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


def test_importing_the_old_command_module_is_refused_and_xl_quiz_stays_a_function(tmp_path, capsys):
    import xferlib

    with pytest.raises(ImportError, match=r"xl\.quiz is the function.*python -m xferlib\.quizzes"):
        import xferlib.quiz  # noqa: F401
    assert "xferlib.quiz" not in sys.modules
    write(tmp_path, GOOD)
    xferlib.quiz("demo", root=tmp_path)
    assert "Quiz: Demo bank" in capsys.readouterr().out


def test_choices_are_shuffled_per_learner_and_the_key_follows(tmp_path):
    bank = xl.load_bank(write(tmp_path, GOOD))
    orders = {}
    for who in [f"learner-{i}" for i in range(12)]:
        mine = Q.shuffled(bank, who)
        assert Q.shuffled(bank, who) == mine, "the same learner must see the same order on a re-run"
        for q, original in zip(mine.questions, bank.questions):
            assert sorted(c.text for c in q.choices) == sorted(c.text for c in original.choices)
            assert {q.choices[i].text for i in q.keys} == {original.choices[i].text for i in original.keys}
        orders.setdefault(tuple(c.text for c in mine.questions[0].choices), who)
    assert len(orders) >= 3, "twelve learners should not all see one order"


def test_the_order_of_one_question_does_not_depend_on_the_others(tmp_path):
    bank = xl.load_bank(write(tmp_path, GOOD))
    fewer = Q.shuffled(Q.Bank(bank.stem, bank.title, bank.questions[1:], bank.path), "ana")
    assert Q.shuffled(bank, "ana").questions[1] == fewer.questions[0]


def test_the_learner_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(Q.LEARNER_ENV, "ana")
    assert Q.learner() == "ana"
    monkeypatch.delenv(Q.LEARNER_ENV)
    assert "@" in Q.learner()


def test_text_rendering_gives_each_choices_feedback(tmp_path):
    text = Q.bank_text(xl.load_bank(write(tmp_path, GOOD)))
    assert "   b) Right, the backbone stays as downloaded." in text
    assert "   b) Statistics are buffers, not parameters" in text


def test_html_quiz_is_self_contained_and_follows_the_shuffle(tmp_path):
    bank = Q.shuffled(xl.load_bank(write(tmp_path, GOOD)), "ana")
    page = Q.bank_html(bank)
    assert "http" not in page and "src=" not in page, "nothing may be fetched when the quiz renders"
    assert page.count('class="xlq-q"') == 3 and page.count("<fieldset>") == 3
    single = bank.questions[0]
    assert f'data-key="{[single.answer]}"' in page
    assert page.index(html.escape(single.choices[0].text)) < page.index(html.escape(single.choices[1].text))
    assert "the backbone stays as downloaded" in page and "<details><summary>Answers</summary>" in page
    assert 'type="radio"' in page and 'type="checkbox"' in page and 'inputmode="decimal"' in page
    ids = re.findall(r'id="(xlq-[0-9a-f]+)"', page + Q.bank_html(bank))
    assert len(set(ids)) == 2, "two renders on one page need two ids"


def test_quiz_shows_html_with_a_text_fallback_in_a_notebook(tmp_path, monkeypatch):
    write(tmp_path, GOOD)
    shown = []
    monkeypatch.setattr(Q, "show_html", lambda markup, text: shown.append((markup, text)))
    monkeypatch.setenv(Q.LEARNER_ENV, "ana")
    xl.quiz("demo", root=tmp_path, interactive=True)
    (markup, text), = shown
    assert 'class="xferlib-quiz"' in markup and text.startswith("Quiz: Demo bank (3 questions)")
    first = Q.shuffled(xl.load_bank("demo", root=tmp_path), "ana").questions[0]
    assert f"   a) {first.choices[0].text}" in text


def test_terminal_drill_scores_by_topic_with_each_choices_feedback(tmp_path):
    bank = xl.load_bank(write(tmp_path, GOOD))
    answers = iter(["zz", "b", "a,b", "1000"])
    lines = []
    results = Q.drill([(bank.title, q) for q in bank.questions], ask=lambda _: next(answers), out=lines.append)
    assert results == {"Demo bank": [True, False, True]}
    assert any("try again" in l for l in lines)
    assert "   b) wrong: Statistics are buffers, not parameters, so this leaves them free." in lines
    assert "   a) right: Right, eval mode only reads the running statistics." in lines
    assert any(l.startswith("   Not quite: the answer is a, c) model.eval()") for l in lines)
    assert Q.report(results, out=lines.append) == pytest.approx(2 / 3)
    assert "Total: 2/3 (67%)" in lines[-1]


def test_command_line_drill_and_check(tmp_path):
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("Demo bank", "Second bank"), "second")
    run = lambda *args, stdin="": subprocess.run(  # noqa: E731
        [sys.executable, "-m", "xferlib.quizzes", "--root", str(tmp_path), *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    out = run("demo", "--in-order", stdin="b\na,c\n1000\n")
    assert out.returncode == 0 and "Total: 3/3 (100%)" in out.stdout
    out = run("--all", "--random", "4", "--seed", "1", stdin="q\n")
    assert out.returncode == 0 and "[1/4]" in out.stdout
    assert run("--check").stdout.strip() == "2 bank(s), 6 questions: all valid"
    write(tmp_path, GOOD.replace("answer: 1\n", "answer: 9\n"), "third")
    out = run("--check")
    assert out.returncode == 2 and "third.yml, question 1" in out.stderr


def test_old_command_still_works_as_an_alias(tmp_path):
    write(tmp_path, GOOD)
    out = subprocess.run([sys.executable, "-m", "xferlib.quiz", "--root", str(tmp_path), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 bank(s), 3 questions: all valid"


# --------------------------------------------------------------------------- regressions
def test_a_bank_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin.yml"
    path.write_bytes(textwrap.dedent(GOOD).replace("Demo bank", "Démo").encode("latin-1"))
    with pytest.raises(xl.QuizError, match=r"latin\.yml: not UTF-8 text"):
        xl.load_bank(path)


@pytest.mark.parametrize(
    "old, new, key, line",
    [
        ("    answer: 1\n", "    answer: 1\n    answer: 2\n", "answer", 14),
        ("title: Demo bank\n", "title: Demo bank\ntitle: Other bank\n", "title", 3),
    ],
)
def test_a_key_given_twice_is_refused(tmp_path, old, new, key, line):
    path = write(tmp_path, GOOD.replace(old, new, 1), "dup")
    with pytest.raises(xl.QuizError, match=rf"dup\.yml, line {line}: the key '{key}' appears twice"):
        xl.load_bank(path)


def test_the_strict_loader_is_still_safe_and_allows_merge_keys():
    text = "base: &b {a: 1}\nchild:\n  <<: *b\n  a: 2\n"
    assert yaml.load(text, Loader=Q._StrictLoader)["child"] == {"a": 2}
    with pytest.raises(yaml.YAMLError):
        yaml.load("x: !!python/object/apply:os.getcwd []\n", Loader=Q._StrictLoader)


@pytest.mark.parametrize(
    "old, new",
    [
        ("    answer: 1000", "    answer: .nan"),
        ("    answer: 1000", "    answer: .inf"),
        ("    tolerance: 0", "    tolerance: .inf"),
        ("    tolerance: 0", "    tolerance: .nan"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path, old, new):
    path = write(tmp_path, GOOD.replace(old, new, 1), "nan")
    with pytest.raises(xl.QuizError, match=r"nan\.yml, question 3.*finite number"):
        xl.load_bank(path)


@pytest.mark.parametrize("word", ["yes", "Off", "~"])
def test_boolean_and_null_choices_must_be_quoted(tmp_path, word):
    text = GOOD.replace("      - text: Only BatchNorm\n", f"      - text: {word}\n", 1)
    path = write(tmp_path, text, "yesno")
    with pytest.raises(xl.QuizError, match=r"yesno\.yml, question 1.*choice c: text .* put it in quotes, e\.g\. 'yes'"):
        xl.load_bank(path)
    assert xl.load_bank(write(tmp_path, text.replace(f"text: {word}", f"text: '{word}'"), "quoted")).questions[0].choices[2].text == word


@pytest.mark.parametrize("value", ["-3", "0", "many"])
def test_command_line_refuses_a_bad_random_count(tmp_path, capsys, value):
    write(tmp_path, GOOD)
    with pytest.raises(SystemExit) as info:
        Q.main(["--root", str(tmp_path), "demo", "--random", value], ask=pytest.fail)
    assert info.value.code == 2
    assert "--random: expected a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "gone",
    [EOFError(), ValueError("I/O operation on closed file."), OSError("I/O operation on closed file"),
     RuntimeError("input(): lost sys.stdin")],
    ids=["eof", "closed-value", "closed-os", "lost-stdin"],
)
def test_command_line_ends_cleanly_when_stdin_closes(tmp_path, capsys, gone):
    write(tmp_path, GOOD)
    answers = iter(["b"])

    def ask(_):
        try:
            return next(answers)
        except StopIteration:
            raise gone from None

    assert Q.main(["--root", str(tmp_path), "demo", "--in-order"], ask=ask) == 0
    out = capsys.readouterr().out
    assert "(input ended after 1 of 3 questions)" in out and "Total: 1/1 (100%)" in out


def test_ctrl_c_shows_the_score_so_far_and_exits_130(tmp_path, capsys):
    write(tmp_path, GOOD)
    answers = iter(["b", "a"])

    def ask(_):
        try:
            return next(answers)
        except StopIteration:
            raise KeyboardInterrupt from None

    try:
        status = Q.main(["--root", str(tmp_path), "demo", "--in-order"], ask=ask)
    except KeyboardInterrupt:  # left uncaught, it would stop the whole test run
        pytest.fail("Ctrl-C escaped main() as a traceback")
    assert status == 130
    out = capsys.readouterr().out
    assert "(stopped)" in out and "Score by topic:" in out and "Total: 1/2 (50%)" in out


@pytest.mark.parametrize("stem", ["../secret", "sub/demo", "SECRET_ABS", "..", "sub\\demo"])
def test_a_stem_must_be_a_plain_name_in_the_quiz_folder(tmp_path, stem):
    root = tmp_path / "quizzes"
    write(root / "sub", GOOD, "demo")      # banks a stem could reach today if paths were allowed
    write(tmp_path, GOOD, "secret")
    stem = str(tmp_path / "secret") if stem == "SECRET_ABS" else stem
    with pytest.raises(xl.QuizError, match=re.escape(repr(stem)) + " is not a bank name"):
        xl.load_bank(stem, root=root)
    assert xl.load_bank(tmp_path / "secret.yml").title == "Demo bank"  # an explicit .yml path still loads


@pytest.mark.parametrize("path", BANKS, ids=[p.stem for p in BANKS])
def test_course_bank_is_valid(path):
    bank = xl.load_bank(path)
    assert len(bank) >= 8, f"{path.name}: a lesson's bank needs at least 8 questions"
    notebook = REPO / "notebooks" / f"{path.stem}.ipynb"
    assert notebook.exists(), f"{path.name} has no notebook {notebook.name}"


def test_bank_stats_see_what_a_guesser_would_exploit(tmp_path):
    stats = Q.bank_stats(xl.load_bank(write(tmp_path, GOOD)))
    assert stats["single"] == stats["multiple"] == stats["numeric"] == 1
    assert stats["longest_is_key"] == stats["shortest_is_key"] == 0  # the key ties for longest: not counted
    assert stats["key_positions"] == {"b": 1} and stats["all_but_one"] == 1 and stats["all_right"] == 0
    assert stats["chance"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("path", BANKS, ids=[p.stem for p in BANKS])
def test_a_test_wise_guesser_cannot_pass_the_course_bank(path):
    """Picking the longest or the shortest choice, always the same letter, or "all but one"
    must not beat chance by much; choices are misconceptions with their own feedback."""
    bank = xl.load_bank(path)
    s = Q.bank_stats(bank)
    print(Q.stats_table([bank]))
    n_single = s["single"]
    third = math.ceil(n_single / 3)
    assert n_single >= 4, "too few single-choice items to judge"
    assert s["longest_is_key"] <= third, f"the key is the longest choice in {s['longest_is_key']} of {n_single} items"
    assert s["shortest_is_key"] <= third, f"the key is the shortest choice in {s['shortest_is_key']} of {n_single} items"
    assert max(s["key_positions"].values()) <= math.ceil(n_single / 4) + 1, f"keys bunch up: {s['key_positions']}"
    assert set(s["key_positions"]) == set("abcd"), f"a key position is never used: {s['key_positions']}"
    assert 0.75 <= s["key_length_ratio"] <= 1.33, f"keys are {s['key_length_ratio']:.2f}x as long as the other choices"
    assert s["all_but_one"] <= 1 and s["all_right"] == 0
    assert s["numeric"] <= len(bank) // 4, f"{s['numeric']} of {len(bank)} items are numeric"
    for q in bank.questions:
        if q.kind == "single":
            assert len(q.choices) == 4, f"{q.prompt[:50]!r}: a single-choice item has four choices"
        feedback = [c.feedback for c in q.choices]
        assert len(set(feedback)) == len(feedback), f"{q.prompt[:50]!r}: two choices share their feedback"


def test_the_command_prints_the_statistics_of_every_bank(capsys):
    assert Q.main(["--stats", "--root", str(REPO / "quizzes")]) == 0
    table = capsys.readouterr().out
    print(table)
    assert table.splitlines()[0].startswith("bank") and len(table.splitlines()) == len(BANKS) + 2


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    """`python -m xferlib.quizzes --all ... | head` must not end in a BrokenPipeError traceback."""
    script = ("import sys, xferlib.quizzes as Q\n"
              "def main():\n    for i in range(200_000):\n        print('line', i)\n    return 0\n"
              "Q.main = main\nsys.exit(Q.run())\n")
    command = f"{sys.executable} -c \"{script}\" | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60)
    assert out.stdout == "line 0\n" and "Traceback" not in out.stderr and out.returncode == 0, out.stderr[-500:]
