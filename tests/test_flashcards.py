"""Flash cards (the deck logic, the HTML cards, the text fallback) and the mock interview in a terminal."""

import importlib
import json
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
    choices:
      - text: Convolution weights
        feedback: They have no gradient, so they stay.
      - text: BatchNorm running statistics
        feedback: Right, buffers update in the forward pass.
    answer: 1
    explanation: Buffers update in the forward pass.
    topic: freezing
  - prompt: Which of these are parameter-efficient?
    kind: multiple
    choices:
      - text: LoRA
        feedback: Right, low-rank updates.
      - text: Adapters
        feedback: Right, small inserted layers.
      - text: Full fine-tuning
        feedback: It trains every weight.
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
    choices:
      - text: 'yes'
        feedback: Right.
      - text: 'no'
        feedback: Not this one.
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
    cards = F.cards_from_bank("topics", root=bank_root, who="ana")
    first = xl.quizzes.shuffled(xl.load_bank("topics", root=bank_root), "ana").questions[0]
    assert len(cards) == 4
    letter = "ab"[first.answer]
    assert f"{letter}) BatchNorm running statistics" in cards[0].question   # the learner's order
    assert cards[0].answer.startswith(f"{letter}) BatchNorm running statistics. Buffers update")
    assert [c.topic for c in cards] == ["freezing", "PEFT", "PEFT", "Topic bank"]


def test_text_fallback_contains_every_question_and_answer(bank_root, capsys):
    assert F.show("topics", root=bank_root, interactive=False) is None
    out = capsys.readouterr().out
    assert out.startswith("Flash cards: Topic bank (4 cards)")
    for card in F.cards_from_bank("topics", root=bank_root):
        assert card.question in out and card.answer in out
    F.show(PAIRS, title="mine")           # outside a kernel: text
    out = capsys.readouterr().out
    assert all(q in out and a in out for q, a in PAIRS)


def test_the_course_bank_makes_a_deck():
    deck = F.Deck(F.cards_from_bank("09_interview_prep"))
    assert len(deck) >= 30 and all(c.topic for c in deck.cards)


# ----------------------------------------------------------------------------- the HTML cards
def test_html_deck_holds_every_card_and_runs_without_a_kernel():
    deck = F.Deck(PAIRS[:2] + [("Does </script> end the page?", "No: it is escaped.")], title="Two cards")
    page = F.deck_html(deck)
    assert 'class="xferlib-flashcards"' in page and "http" not in page.replace("http://www.w3.org", "")
    data = re.search(r'<script type="application/json" class="xlf-data">(.*?)</script>', page, re.S).group(1)
    cards = json.loads(data)
    assert [c["question"] for c in cards] == ["Q one?", "Q two?", "Does </script> end the page?"]
    assert page.count("</script>") == 2, "a card's text must not close the script"
    for label in ("Reveal", "known", "not yet", "Start again"):
        assert label in page
    assert "<details><summary>All 3 cards</summary>" in page   # readable with JavaScript off


def test_show_displays_only_the_cards(monkeypatch):
    """No stale ``<Deck ...>`` under the cards: show() returns nothing for the notebook to print."""
    shown = []
    monkeypatch.setattr(F, "show_html", lambda markup, text: shown.append((markup, text)))
    assert F.show(PAIRS, title="Three", interactive=True) is None
    (markup, text), = shown
    assert 'class="xferlib-flashcards"' in markup and text.startswith("Three (3 cards)")


# ----------------------------------------------------------------------------- the mock interview
def test_mock_interview_scores_by_topic(bank_root, capsys):
    answers = iter(["b", "a,b", "12", "a"])
    assert cli.main(["--root", str(bank_root), "--all", "--in-order"], ask=lambda _: next(answers)) == 0
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
