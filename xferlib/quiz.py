"""Drill quiz banks in a terminal.

    python -m xferlib.quiz 02_feature_extraction      # one bank
    python -m xferlib.quiz --all --random 10           # a mock interview from every bank
    python -m xferlib.quiz --list                      # what is there
    python -m xferlib.quiz --check                     # validate every bank and exit

Answer with a letter (``b``), letters for several (``a,c``), or a number; ``q`` quits.
"""

from __future__ import annotations

import argparse
import random
import sys
import types
from collections import defaultdict

from .quizzes import QuizError, list_banks, load_bank, quiz


class _CallableModule(types.ModuleType):
    """Importing this module rebinds ``xferlib.quiz`` to it; calling it still shows a quiz."""

    def __call__(self, *args, **kwargs):
        return quiz(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def _parse(question, text: str):
    text = text.strip().lower()
    if question.kind == "numeric":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    letters = [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    indices = []
    for letter in letters:
        if len(letter) != 1 or not "a" <= letter < chr(97 + len(question.choices)):
            raise ValueError(f"{letter!r} is not one of a to {chr(96 + len(question.choices))}")
        indices.append(ord(letter) - 97)
    if question.kind == "single":
        if len(indices) != 1:
            raise ValueError("give exactly one letter")
        return indices[0]
    return indices


def drill(items, ask=input, out=print) -> dict[str, list[bool]]:
    """Ask each ``(topic, question)``; return the results per topic (``q`` or the end of the
    input stops early)."""
    results: dict[str, list[bool]] = defaultdict(list)
    for n, (topic, q) in enumerate(items, 1):
        out(f"\n[{n}/{len(items)}] ({topic}) {q.prompt}")
        for i, choice in enumerate(q.choices):
            out(f"   {chr(97 + i)}) {choice}")
        out({"single": "   (one letter)", "multiple": "   (all letters that apply, e.g. a,c)", "numeric": "   (a number)"}[q.kind])
        while True:
            try:
                text = ask("your answer (q to stop): ")
            except EOFError:
                out(f"\n(input ended after {n - 1} of {len(items)} questions)")
                return results
            if text.strip().lower() in ("q", "quit", "exit"):
                return results
            try:
                response = _parse(q, text)
                break
            except ValueError as err:
                out(f"   ({err}; try again)")
        ok = q.check(response)
        results[topic].append(ok)
        out(("   Right. " if ok else f"   Not quite: the answer is {q.answer_text()}. ") + q.explanation)
    return results


def report(results: dict[str, list[bool]], out=print) -> float:
    total = sum(len(v) for v in results.values())
    right = sum(sum(v) for v in results.values())
    out("\nScore by topic:")
    for topic, marks in sorted(results.items()):
        out(f"  {topic:<40} {sum(marks)}/{len(marks)}")
    out(f"Total: {right}/{total}" + (f" ({right / total:.0%})" if total else ""))
    return right / total if total else 0.0


def main(argv=None, ask=input) -> int:
    """The command line; ``ask`` reads each answer (``input`` in a terminal)."""
    parser = argparse.ArgumentParser(prog="python -m xferlib.quiz", description="Drill the course's quiz banks in a terminal.")
    parser.add_argument("stems", nargs="*", help="bank names, e.g. 02_feature_extraction")
    parser.add_argument("--all", action="store_true", help="draw from every bank")
    parser.add_argument("--random", type=int, metavar="N", help="ask N questions drawn at random")
    parser.add_argument("--seed", type=int, default=None, help="seed for --random")
    parser.add_argument("--root", default=None, help="folder holding the banks")
    parser.add_argument("--list", action="store_true", help="list the banks and exit")
    parser.add_argument("--check", action="store_true", help="validate the banks and exit")
    args = parser.parse_args(argv)
    try:
        stems = list_banks(args.root) if (args.all or args.list or args.check and not args.stems) else args.stems
        if args.list:
            for stem in stems:
                bank = load_bank(stem, args.root)
                print(f"{stem:<28} {len(bank):>3} questions  {bank.title}")
            return 0
        if not stems:
            parser.error("name a bank, or use --all")
        banks = [load_bank(stem, args.root) for stem in stems]
    except QuizError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{len(banks)} bank(s), {sum(len(b) for b in banks)} questions: all valid")
        return 0
    # a question's own topic when its bank gives one, else the bank's title
    items = [(q.topic or bank.title, q) for bank in banks for q in bank.questions]
    if args.random:
        items = random.Random(args.seed).sample(items, min(args.random, len(items)))
    results = drill(items, ask=ask)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
