"""Flash cards (the deck logic, the widget, the text fallback) and the mock interview in a terminal."""

import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import xferlib as xl
from xferlib import flashcards as F

cli = importlib.import_module("xferlib.quizzes")
REPO = Path(__file__).resolve().parent.parent
PAIRS = [("Q one?", "A one."), ("Q two?", "A two."), ("Q three?", "A three.")]

BANK = """
title: Topic bank
questions:
  - prompt: Which tensors does requires_grad=False leave free to change in train mode?
    kind: single
    choices: [Convolution weights, BatchNorm running statistics]
    answer: 1
    explanation: Buffers update in the forward pass.
    topic: freezing
  - prompt: Which of these are parameter-efficient?
    kind: multiple
    choices: [LoRA, Adapters, Full fine-tuning]
    answer: [0, 1]
    explanation: Both train a small fraction of the parameters.
    topic: PEFT
  - prompt: How many trainable parameters does rank-8 LoRA add to a 1024x1024 layer?
    kind: numeric
    answer: 16384
    explanation: 2 x 8 x 1024.
    topic: PEFT
  - prompt: A question without a topic
    kind: single
    choices: ['yes', 'no']
    answer: 0
    explanation: Scored under the bank's title.
"""


@pytest.fixture
def bank_root(tmp_path):
    (tmp_path / "topics.yml").write_text(textwrap.dedent(BANK))
    return tmp_path


# ----------------------------------------------------------------------------- the deck
def test_not_yet_cards_come_back_until_all_are_known():
    deck = F.Deck(PAIRS)
    assert [deck.current.question, deck.remaining, deck.done] == ["Q one?", 3, False]
    deck.mark(False)                      # Q one goes to the back
    assert deck.current.question == "Q two?"
    deck.mark(True)
    deck.mark(False)                      # Q three goes to the back
    assert [deck.current.question, deck.remaining] == ["Q one?", 2]
    deck.mark(True)
    assert deck.current.question == "Q three?"
    deck.mark(False)                      # the last card comes straight back
    assert deck.current.question == "Q three?"
    deck.mark(True)
    assert deck.done and deck.current is None and deck.remaining == 0
    assert [deck.cards[i].question for i in deck.known] == ["Q two?", "Q one?", "Q three?"]
    assert deck.counter() == "All 3 cards known after 6 answers."
    with pytest.raises(RuntimeError, match="known already"):
        deck.mark(True)
    deck.restart()
    assert deck.remaining == 3 and deck.known == [] and deck.answers == 0


def test_counter_and_shuffle_are_reproducible():
    deck = F.Deck(PAIRS, shuffle=True, seed=3)
    again = F.Deck(PAIRS, shuffle=True, seed=3)
    assert [deck.current] == [again.current]
    deck.mark(True)
    assert deck.counter() == "1 of 3 known, 2 to go (1 answers so far)"
    assert "Deck 'Flash cards'" in repr(deck)


def test_cards_come_from_pairs_dicts_cards_or_a_bank(bank_root):
    deck = F.Deck([("q", "a"), {"question": "q2", "answer": "a2", "topic": "t"}, F.Card("q3", "a3")])
    assert [c.topic for c in deck.cards] == [None, "t", None]
    with pytest.raises(TypeError, match="a card is"):
        F.Deck(["just a string"])
    with pytest.raises(ValueError, match="at least one card"):
        F.Deck([])
    cards = F.cards_from_bank("topics", root=bank_root)
    assert len(cards) == 4
    assert cards[0].question.endswith("b) BatchNorm running statistics")
    assert cards[0].answer.startswith("BatchNorm running statistics. Buffers update")
    assert [c.topic for c in cards] == ["freezing", "PEFT", "PEFT", "Topic bank"]


def test_text_fallback_contains_every_question_and_answer(bank_root, capsys):
    deck = F.show("topics", root=bank_root, widgets=False)
    out = capsys.readouterr().out
    assert out.startswith("Flash cards: Topic bank (4 cards)")
    for card in deck.cards:
        assert card.question in out and card.answer in out
    F.show(PAIRS, title="mine")           # outside a kernel: text
    out = capsys.readouterr().out
    assert all(q in out and a in out for q, a in PAIRS)


def test_the_course_bank_makes_a_deck():
    deck = F.Deck(F.cards_from_bank("09_interview_prep"))
    assert len(deck) >= 30 and all(c.topic for c in deck.cards)


# ----------------------------------------------------------------------------- the widget
def test_widget_reveals_marks_and_counts():
    box = F._widget(F.Deck(PAIRS[:2], title="Two cards"))
    assert "xferlib-flashcards" in box._dom_classes
    _, counter, question, answer, buttons = box.children
    reveal, known, not_yet, again = buttons.children
    assert "Q one?" in question.value and answer.value == "" and known.disabled and not reveal.disabled
    reveal.click()
    assert "A one." in answer.value and not known.disabled and reveal.disabled
    not_yet.click()
    assert "Q two?" in question.value and answer.value == "" and "0 of 2 known" in counter.value
    reveal.click()
    known.click()
    assert "Q one?" in question.value and "1 of 2 known" in counter.value
    reveal.click()
    known.click()
    assert "every card is known" in question.value and "All 2 cards known after 3 answers" in counter.value
    assert reveal.disabled and known.disabled
    again.click()
    assert "Q one?" in question.value and "0 of 2 known" in counter.value
    bundle = box._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Two cards (2 cards)") and "Q two?" in bundle["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ----------------------------------------------------------------------------- the mock interview
def test_mock_interview_scores_by_topic(bank_root, capsys):
    answers = iter(["b", "a,b", "12", "a"])
    assert cli.main(["--root", str(bank_root), "--all"], ask=lambda _: next(answers)) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  freezing\s+1/1$", out, re.M)
    assert re.search(r"^  PEFT\s+1/2$", out, re.M)          # a question's own topic...
    assert re.search(r"^  Topic bank\s+1/1$", out, re.M)    # ...else its bank's title
    assert "Total: 3/4 (75%)" in out


def test_mock_interview_command_line_on_every_course_bank():
    """`python -m xferlib.quizzes --all --random 10` with answers on stdin: a letter, or a number
    when a letter is refused, so every question gets an answer whatever the draw."""
    stdin = "a\n1\n" * 15
    run = subprocess.run([sys.executable, "-m", "xferlib.quizzes", "--all", "--random", "10", "--seed", "0"],
                         input=stdin, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "[10/10]" in out and "Score by topic:" in out
    scores = re.findall(r"^  (.+?)\s+(\d+)/(\d+)$", out, re.M)
    assert scores and sum(int(n) for _, _, n in scores) == 10
    assert re.search(r"^Total: \d+/10 \(\d+%\)$", out, re.M)


def test_topics_must_be_text(tmp_path):
    (tmp_path / "bad.yml").write_text(textwrap.dedent(BANK).replace("topic: freezing", "topic: [a, b]"))
    with pytest.raises(xl.QuizError, match="bad.yml, question 1.*'topic' must be non-empty text"):
        xl.load_bank("bad", root=tmp_path)
