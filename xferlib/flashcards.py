"""Flash cards: drill questions until you know every one.

    from xferlib import flashcards
    flashcards.show("09_interview_prep")                   # the cards of a quiz bank
    flashcards.show([("What is ...?", "It is ..."), ...])  # or your own (question, answer) pairs

In Jupyter a card shows its question; *Reveal* shows the answer; *known* puts the card
away, *not yet* sends it to the back of the pile, so it comes back until you know it. A
counter keeps track. Outside a widget front end the deck prints as plain text.

:class:`Deck` holds the logic (order, known and not-yet cards, repeats) and knows nothing
about widgets, so it can be driven from code and tested on its own.
"""

from __future__ import annotations

import html
import random
from collections import deque
from dataclasses import dataclass

from .display import in_kernel as _in_kernel
from .quizzes import Bank, load_bank, widget_box

__all__ = ["Card", "Deck", "cards_from_bank", "deck_text", "show"]


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


def cards_from_bank(bank: Bank | str, root=None) -> list[Card]:
    """One card per quiz question: the prompt (with its choices) and the answer with its explanation."""
    bank = load_bank(bank, root) if not isinstance(bank, Bank) else bank
    cards = []
    for q in bank.questions:
        choices = "".join(f"\n  {chr(97 + i)}) {c}" for i, c in enumerate(q.choices))
        cards.append(Card(q.prompt + choices, f"{q.answer_text()}. {q.explanation}", q.topic or bank.title))
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


def _widget(deck: Deck):
    import ipywidgets as w

    counter, question, answer = w.HTML(), w.HTML(), w.HTML()
    reveal = w.Button(description="Reveal", button_style="info", layout=w.Layout(width="90px"))
    known = w.Button(description="known", button_style="success", layout=w.Layout(width="90px"))
    not_yet = w.Button(description="not yet", button_style="warning", layout=w.Layout(width="90px"))
    again = w.Button(description="Start again", layout=w.Layout(width="110px"))

    def text(s: str) -> str:
        return html.escape(s).replace("\n", "<br>")

    def show_card(revealed: bool = False):
        counter.value = f"<i>{html.escape(deck.counter())}</i>"
        card = deck.current
        if card is None:
            question.value, answer.value = "<b>Done: every card is known.</b>", ""
        else:
            topic = f"<span style='color:#777'>[{html.escape(card.topic)}]</span> " if card.topic else ""
            question.value = f"{topic}<b>{text(card.question)}</b>"
            answer.value = text(card.answer) if revealed else ""
        reveal.disabled = card is None or revealed
        known.disabled = not_yet.disabled = card is None or not revealed

    reveal.on_click(lambda _: show_card(revealed=True))
    known.on_click(lambda _: (deck.mark(True), show_card()))
    not_yet.on_click(lambda _: (deck.mark(False), show_card()))
    again.on_click(lambda _: (deck.restart(), show_card()))
    show_card()

    box = widget_box([w.HTML(f"<h3>{html.escape(deck.title)}</h3>"), counter, question, answer,
                      w.HBox([reveal, known, not_yet, again])], text=lambda: deck_text(deck), css_class="xferlib-flashcards")
    box.deck = deck
    return box


def show(source, title: str | None = None, shuffle: bool = False, seed: int | None = None, root=None, widgets: bool | None = None):
    """Show flash cards from a quiz bank (its stem, like ``"09_interview_prep"``), a list of
    cards or ``(question, answer)`` pairs, or a :class:`Deck`: a widget inside a Jupyter
    kernel, plain text elsewhere. Returns the deck."""
    if isinstance(source, Deck):
        deck = source
    elif isinstance(source, (str, Bank)):
        bank = load_bank(source, root) if isinstance(source, str) else source
        deck = Deck(cards_from_bank(bank), title or f"Flash cards: {bank.title}", shuffle, seed)
    else:
        deck = Deck(source, title or "Flash cards", shuffle, seed)
    if widgets is None:
        widgets = _in_kernel()
    if widgets:
        try:
            box = _widget(deck)
        except ImportError:
            widgets = False
        else:
            from IPython.display import display

            display(box)
            return deck
    print(deck_text(deck))
    return deck
