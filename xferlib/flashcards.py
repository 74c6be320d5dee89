"""Flash cards: drill questions until you know every one.

    from xferlib import flashcards
    flashcards.show("09_interview_prep")                   # the cards of a quiz bank
    flashcards.show([("What is ...?", "It is ..."), ...])  # or your own (question, answer) pairs

In a notebook a card shows its question; *Reveal* shows the answer; *known* puts the card
away, *not yet* sends it to the back of the pile, so it comes back until you know it. A
counter keeps track. The cards are HTML with a small script, so they also turn in a static
HTML export, a web page, VS Code or Colab, with no kernel; outside a notebook the deck
prints as plain text.

:class:`Deck` holds the same logic in Python (order, known and not-yet cards, repeats), so
it can be driven from code and tested on its own.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass

from .display import in_kernel as _in_kernel
from .display import html_id, html_text, show_html
from .quizzes import Bank, load_bank, shuffled

__all__ = ["Card", "Deck", "cards_from_bank", "deck_html", "deck_text", "show"]


@dataclass(frozen=True)
class Card:
    question: str
    answer: str
    topic: str | None = None


def _as_card(item) -> Card:
    if isinstance(item, Card):
        return item
    if isinstance(item, dict):
        return Card(str(item["question"]), str(item["answer"]), item.get("topic"))
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return Card(*(str(x) if x is not None else None for x in item))
    raise TypeError(f"a card is a Card, a dict with 'question' and 'answer', or a (question, answer) pair; got {item!r}")


def cards_from_bank(bank: Bank | str, root=None, who: str | None = None) -> list[Card]:
    """One card per quiz question: the prompt with its choices (in ``who``'s order, see
    :func:`xferlib.quizzes.shuffled`) and the answer with its explanation."""
    bank = load_bank(bank, root) if not isinstance(bank, Bank) else bank
    cards = []
    for q in shuffled(bank, who).questions:
        choices = "".join(f"\n  {chr(97 + i)}) {c.text}" for i, c in enumerate(q.choices))
        letters = ", ".join(chr(97 + i) for i in q.keys)
        answer = (f"{letters}) " if letters else "") + f"{q.answer_text()}. {q.explanation}"
        cards.append(Card(q.prompt + choices, answer, q.topic or bank.title))
    return cards


class Deck:
    """A pile of cards. ``current`` is the card on top; ``mark(True)`` puts it away as known,
    ``mark(False)`` moves it to the bottom of the pile. The deck is ``done`` when every card
    is known."""

    def __init__(self, cards, title: str = "Flash cards", shuffle: bool = False, seed: int | None = None):
        self.cards = [_as_card(c) for c in cards]
        if not self.cards:
            raise ValueError("a deck needs at least one card")
        self.title = title
        self.shuffle, self.seed = shuffle, seed
        self.restart()

    def restart(self) -> None:
        order = list(range(len(self.cards)))
        if self.shuffle:
            random.Random(self.seed).shuffle(order)
        self._pile = deque(order)
        self.known: list[int] = []   # card indices, in the order they became known
        self.answers = 0              # how many times a card was marked

    def __len__(self) -> int:
        return len(self.cards)

    @property
    def current(self) -> Card | None:
        return self.cards[self._pile[0]] if self._pile else None

    @property
    def remaining(self) -> int:
        return len(self._pile)

    @property
    def done(self) -> bool:
        return not self._pile

    def mark(self, known: bool) -> None:
        if self.done:
            raise RuntimeError("every card is known already; restart() to go again")
        index = self._pile.popleft()
        self.answers += 1
        if known:
            self.known.append(index)
        else:
            self._pile.append(index)

    def __repr__(self) -> str:
        return f"<Deck {self.title!r}: {self.counter()}>"

    def counter(self) -> str:
        if self.done:
            return f"All {len(self)} cards known after {self.answers} answers."
        return f"{len(self.known)} of {len(self)} known, {self.remaining} to go ({self.answers} answers so far)"


def deck_text(deck: Deck) -> str:
    """The whole deck as plain text: every question, each followed by its answer."""
    lines = [f"{deck.title} ({len(deck)} cards)", ""]
    for n, card in enumerate(deck.cards, 1):
        lines.append(f"{n}. {card.question}")
        lines.append(f"   Answer: {card.answer}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_DECK_CSS = """
#{id} {{ max-width: 52em; }}
#{id} .xlf-card {{ border: 2px solid var(--jp-border-color1, #999); border-radius: 6px; padding: 0.6em 1em; margin: 0.4em 0; min-height: 4em; }}
#{id} .xlf-answer {{ border-top: 1px dashed currentColor; padding-top: 0.4em; }}
#{id} button {{ margin: 0.2em 0.4em 0.2em 0; padding: 0.2em 1em; }}
#{id} button:focus-visible {{ outline: 3px solid currentColor; outline-offset: 2px; }}
"""

_DECK_JS = """
(function () {
  var root = document.getElementById("{id}");
  if (!root || root.getAttribute("data-ready")) { return; }
  root.setAttribute("data-ready", "1");
  root.querySelector(".xlf-nojs").hidden = true;
  root.querySelector(".xlf-live").hidden = false;
  var cards = JSON.parse(root.querySelector(".xlf-data").textContent);
  var pile, known, answers, revealed;
  var el = function (name) { return root.querySelector(".xlf-" + name); };
  function restart() { pile = cards.map(function (_, i) { return i; }); known = 0; answers = 0; revealed = false; draw(); }
  function draw() {
    var card = pile.length ? cards[pile[0]] : null;
    el("counter").textContent = card ? known + " of " + cards.length + " known, " + pile.length + " to go (" + answers + " answers so far)"
                                     : "All " + cards.length + " cards known after " + answers + " answers.";
    el("topic").textContent = card && card.topic ? "[" + card.topic + "]" : "";
    el("question").textContent = card ? card.question : "Done: every card is known.";
    el("answer").textContent = card && revealed ? card.answer : "";
    el("answer").hidden = !(card && revealed);
    el("reveal").disabled = !card || revealed;
    el("known").disabled = el("notyet").disabled = !card || !revealed;
  }
  function mark(isKnown) {
    var top = pile.shift();
    answers += 1;
    if (isKnown) { known += 1; } else { pile.push(top); }
    revealed = false;
    draw();
    el("reveal").disabled ? el("again").focus() : el("reveal").focus();
  }
  el("reveal").addEventListener("click", function () { revealed = true; draw(); el("known").focus(); });
  el("known").addEventListener("click", function () { mark(true); });
  el("notyet").addEventListener("click", function () { mark(false); });
  el("again").addEventListener("click", restart);
  restart();
})();
"""


def deck_html(deck: Deck) -> str:
    """The deck as one self-contained piece of HTML and script: the same pile logic as
    :class:`Deck`, buttons a keyboard can reach, and every card in a ``<details>`` list that
    needs no JavaScript (a static page, an untrusted notebook)."""
    uid = html_id("xlf", deck.title, *(c.question for c in deck.cards))
    order = [deck.cards[i] for i in deck._pile] + [deck.cards[i] for i in deck.known]
    data = json.dumps([{"question": c.question, "answer": c.answer, "topic": c.topic} for c in order])
    data = data.replace("</", "<\\/")  # a card that says "</script>" cannot end the script early
    items = "".join(f"<li>{html_text(c.question)}<br><i>Answer:</i> {html_text(c.answer)}</li>" for c in order)
    return "\n".join([
        f'<div class="xferlib-flashcards" id="{uid}">', f"<style>{_DECK_CSS.format(id=uid)}</style>",
        f"<h3>{html_text(deck.title)}</h3>",
        '<p class="xlf-nojs"><i>The cards turn when this cell runs (a saved, untrusted notebook shows them as a list).</i></p>',
        '<div class="xlf-live" hidden>',
        '<p class="xlf-counter" role="status" aria-live="polite"></p>',
        '<div class="xlf-card"><div class="xlf-topic"></div><div class="xlf-question" style="font-weight:bold; white-space:pre-wrap"></div>'
        '<div class="xlf-answer" style="white-space:pre-wrap" aria-live="polite" hidden></div></div>',
        '<div role="group" aria-label="flash card controls"><button type="button" class="xlf-reveal">Reveal</button>'
        '<button type="button" class="xlf-known">\u2714 known</button><button type="button" class="xlf-notyet">\u21bb not yet</button>'
        '<button type="button" class="xlf-again">Start again</button></div></div>',
        f"<details><summary>All {len(deck)} cards</summary><ol>{items}</ol></details>",
        f'<script type="application/json" class="xlf-data">{data}</script>',
        f"<script>{_DECK_JS.replace('{id}', uid)}</script></div>",
    ])


def show(source, title: str | None = None, shuffle: bool = False, seed: int | None = None, root=None,
         interactive: bool | None = None) -> None:
    """Show flash cards from a quiz bank (its stem, like ``"09_interview_prep"``), a list of
    cards or ``(question, answer)`` pairs, or a :class:`Deck`: cards to turn inside a notebook
    (HTML and a small script, no kernel needed once shown), plain text elsewhere. To drive a
    pile from code, build a :class:`Deck`."""
    if isinstance(source, Deck):
        deck = source
    elif isinstance(source, (str, Bank)):
        bank = load_bank(source, root) if isinstance(source, str) else source
        deck = Deck(cards_from_bank(bank), title or f"Flash cards: {bank.title}", shuffle, seed)
    else:
        deck = Deck(source, title or "Flash cards", shuffle, seed)
    if interactive is None:
        interactive = _in_kernel()
    if interactive:
        show_html(deck_html(deck), deck_text(deck))
    else:
        print(deck_text(deck))
