"""Quizzes with feedback: YAML banks, validated on load, shown as widgets or as text.

A bank is ``quizzes/<notebook-stem>.yml``::

    title: Feature extraction
    questions:
      - prompt: Which layers does feature extraction train?
        kind: single            # single | multiple | numeric
        choices: [All of them, Only the new head, Only BatchNorm]
        answer: 1               # index (single), list of indices (multiple), number (numeric)
        explanation: The backbone is frozen; only the new head learns.
      - prompt: ...
        kind: numeric
        answer: 0.5
        tolerance: 0.01         # optional, numeric only
        explanation: ...
        topic: BatchNorm        # optional: the terminal drill scores by topic (else by bank)

``xl.quiz("02_feature_extraction")`` renders a bank. In a terminal::

    python -m xferlib.quizzes 02_feature_extraction      # drill one bank
    python -m xferlib.quizzes --all --random 10           # a mock interview from every bank
    python -m xferlib.quizzes --list                      # what is there
    python -m xferlib.quizzes --check                     # validate every bank and exit

Answer with a letter (``b``), letters for several (``a,c``), or a number; ``q`` quits.
The command lives here rather than in a module ``xferlib.quiz``: importing a submodule of
that name would replace the function ``xl.quiz`` with the module. This module imports
neither PyTorch nor widgets (until a widget is shown), so the command starts in a blink.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .display import in_kernel

KINDS = ("single", "multiple", "numeric")
QUIZ_ENV = "XFERLIB_QUIZZES"
_ALLOWED_KEYS = {"prompt", "kind", "choices", "answer", "tolerance", "explanation", "topic"}


class QuizError(ValueError):
    """A quiz bank is missing or malformed; the message names the file and the question."""


@dataclass
class Question:
    prompt: str
    kind: str
    answer: object
    explanation: str
    choices: list[str] = field(default_factory=list)
    tolerance: float = 0.0
    topic: str | None = None

    def check(self, response) -> bool:
        """Whether ``response`` (an index, a collection of indices, or a number) is right."""
        if response is None:
            return False
        if self.kind == "single":
            try:
                return int(response) == self.answer
            except (TypeError, ValueError):
                return False
        if self.kind == "multiple":
            try:
                return {int(r) for r in response} == set(self.answer)
            except (TypeError, ValueError):
                return False
        try:
            return abs(float(response) - float(self.answer)) <= self.tolerance + 1e-12
        except (TypeError, ValueError):
            return False

    def answer_text(self) -> str:
        if self.kind == "single":
            return self.choices[self.answer]
        if self.kind == "multiple":
            return "; ".join(self.choices[i] for i in self.answer)
        return f"{self.answer:g}" + (f" (± {self.tolerance:g})" if self.tolerance else "")


@dataclass
class Bank:
    stem: str
    title: str
    questions: list[Question]
    path: Path

    def __len__(self):
        return len(self.questions)


# --------------------------------------------------------------------------- loading
def quiz_dir(root=None) -> Path:
    """Where the banks are: ``root``, else ``$XFERLIB_QUIZZES``, else a ``quizzes`` folder in
    the working directory or one of its parents (notebooks run from ``notebooks/``), else the
    one beside the installed package."""
    if root is not None:
        return Path(root)
    if os.environ.get(QUIZ_ENV):
        return Path(os.environ[QUIZ_ENV])
    here = Path.cwd()
    candidates = [here / "quizzes", here.parent / "quizzes", here.parent.parent / "quizzes",
                  Path(__file__).resolve().parent.parent / "quizzes"]
    for c in candidates:
        if c.is_dir():
            return c
    raise QuizError("No quizzes folder found; set XFERLIB_QUIZZES to the folder holding the .yml banks")


def list_banks(root=None) -> list[str]:
    return sorted(p.stem for p in quiz_dir(root).glob("*.yml"))


def _fail(path, where: str, message: str):
    raise QuizError(f"{path}{', ' + where if where else ''}: {message}")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int):
        super().__init__(f"line {line}: the key {key!r} appears twice")
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (plain data only, no Python objects) that refuses a key given
    twice in one mapping. YAML keeps the last one silently, so a second ``answer:`` pasted
    below the first would change the right answer without a word."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                pass
        return super().construct_mapping(node, deep=deep)


def _is_plain_name(stem: str) -> bool:
    """A bank's name is a file name in the quiz folder, never a way out of it."""
    return stem not in ("", ".", "..") and not set(stem) & set("/\\:\0")


def _parse_question(path, number: int, raw) -> Question:
    prompt_hint = ""
    if isinstance(raw, dict) and isinstance(raw.get("prompt"), str):
        short = raw["prompt"].strip().splitlines()[0] if raw["prompt"].strip() else ""
        prompt_hint = f" ({short[:50]!r})" if short else ""
    where = f"question {number}{prompt_hint}"
    if not isinstance(raw, dict):
        _fail(path, where, f"expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _ALLOWED_KEYS
    if unknown:
        _fail(path, where, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_ALLOWED_KEYS))}")
    for key in ("prompt", "kind", "answer", "explanation"):
        if key not in raw:
            _fail(path, where, f"missing '{key}'")
    for key in ("prompt", "explanation"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            _fail(path, where, f"'{key}' must be non-empty text")
    if "topic" in raw and (not isinstance(raw["topic"], str) or not raw["topic"].strip()):
        _fail(path, where, f"'topic' must be non-empty text, got {raw['topic']!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        _fail(path, where, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    choices = raw.get("choices")
    answer = raw["answer"]
    tolerance = raw.get("tolerance", 0.0)
    if kind in ("single", "multiple"):
        if not isinstance(choices, list) or len(choices) < 2:
            _fail(path, where, "a choice question needs 'choices': a list of at least two answers")
        for c in choices:
            # YAML 1.1 reads unquoted yes/no/on/off as booleans and ~ or nothing as null
            if isinstance(c, bool) or c is None:
                _fail(path, where, f"choice {c} is a YAML {'boolean' if c is not None else 'null'}, not text: "
                                   "put it in quotes, e.g. 'yes', 'no', 'null'")
            if not isinstance(c, (str, int, float)):
                _fail(path, where, f"choice {c!r} is not text or a number")
        choices = [str(c) for c in choices]
        if len(set(choices)) != len(choices):
            _fail(path, where, "two choices are the same")
        if "tolerance" in raw:
            _fail(path, where, "'tolerance' applies to numeric questions only")
        indices = [answer] if kind == "single" else answer
        if kind == "multiple" and (not isinstance(answer, list) or not answer):
            _fail(path, where, f"a multiple-choice answer must be a non-empty list of choice indices, got {answer!r}")
        for i in indices:
            if not isinstance(i, int) or isinstance(i, bool):
                _fail(path, where, f"answer {i!r} is not a choice index (0 to {len(choices) - 1})")
            if not 0 <= i < len(choices):
                _fail(path, where, f"answer {i} is out of range for {len(choices)} choices (0 to {len(choices) - 1})")
        if kind == "multiple":
            if len(set(answer)) != len(answer):
                _fail(path, where, f"answer {answer} repeats an index")
            answer = sorted(answer)
    else:
        if choices is not None:
            _fail(path, where, "a numeric question takes no 'choices'")
        # .nan matches nothing and .inf matches everything, so neither makes a question
        if not isinstance(answer, (int, float)) or isinstance(answer, bool) or not math.isfinite(answer):
            _fail(path, where, f"a numeric answer must be a finite number, got {answer!r}")
        if (not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool)
                or not math.isfinite(tolerance) or tolerance < 0):
            _fail(path, where, f"tolerance must be a finite number of at least 0, got {tolerance!r}")
        choices = []
    return Question(
        prompt=raw["prompt"].strip(),
        kind=kind,
        answer=answer,
        explanation=raw["explanation"].strip(),
        choices=choices,
        tolerance=float(tolerance),
        topic=raw["topic"].strip() if "topic" in raw else None,
    )


def load_bank(stem_or_path, root=None) -> Bank:
    """Load and validate a bank by stem (``"02_feature_extraction"``, a plain name in the quiz
    folder) or by a path ending in ``.yml``/``.yaml`` (one's own bank, anywhere)."""
    path = Path(stem_or_path)
    if path.suffix not in (".yml", ".yaml"):
        if not _is_plain_name(str(stem_or_path)):
            raise QuizError(f"{str(stem_or_path)!r} is not a bank name: name a bank in the quiz folder "
                            "(like '02_feature_extraction'), or give a path ending in .yml")
        path = quiz_dir(root) / f"{stem_or_path}.yml"
    if not path.is_file():
        available = ", ".join(list_banks(path.parent)) if path.parent.is_dir() else "none"
        raise QuizError(f"{path}: no such quiz bank (available: {available or 'none'})")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except UnicodeDecodeError as err:
        raise QuizError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from err
    except _DuplicateKey as err:
        raise QuizError(f"{path}, {err}: YAML would keep only the last; remove one") from err
    except yaml.YAMLError as err:
        raise QuizError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        _fail(path, "", "expected a mapping with 'title' and 'questions'")
    unknown = set(data) - {"title", "questions"}
    if unknown:
        _fail(path, "", f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    if not isinstance(data.get("title"), str) or not data["title"].strip():
        _fail(path, "", "missing 'title'")
    questions = data.get("questions")
    if not isinstance(questions, list) or not questions:
        _fail(path, "", "'questions' must be a non-empty list")
    parsed = [_parse_question(path, i, q) for i, q in enumerate(questions, start=1)]
    prompts = [q.prompt for q in parsed]
    if len(set(prompts)) != len(prompts):
        dup = next(p for p in prompts if prompts.count(p) > 1)
        _fail(path, "", f"the prompt {dup[:50]!r} appears twice")
    return Bank(stem=path.stem, title=data["title"].strip(), questions=parsed, path=path)


# --------------------------------------------------------------------------- text
def bank_text(bank: Bank, with_answers: bool = True) -> str:
    """The bank as plain text: questions and choices, then the answers with explanations."""
    lines = [f"Quiz: {bank.title} ({len(bank)} questions)", ""]
    for n, q in enumerate(bank.questions, 1):
        hint = {"single": "pick one", "multiple": "pick all that apply", "numeric": "give a number"}[q.kind]
        lines.append(f"{n}. {q.prompt}  [{hint}]")
        lines += [f"   {chr(97 + i)}) {c}" for i, c in enumerate(q.choices)]
        lines.append("")
    if with_answers:
        lines.append("Answers")
        for n, q in enumerate(bank.questions, 1):
            letters = ""
            if q.kind == "single":
                letters = f"{chr(97 + q.answer)}) "
            elif q.kind == "multiple":
                letters = ", ".join(chr(97 + i) for i in q.answer) + ") "
            lines.append(f"{n}. {letters}{q.answer_text()} — {q.explanation}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- widgets
def _widget(bank: Bank):
    import ipywidgets as w

    score = w.HTML()
    results: dict[int, bool] = {}

    def update_score():
        right = sum(results.values())
        score.value = f"<b>Score: {right} / {len(bank)}</b> &nbsp; ({len(results)} answered)"

    items = []
    for n, q in enumerate(bank.questions):
        prompt = w.HTML(f"<b>{n + 1}. {html.escape(q.prompt)}</b>")
        if q.kind == "single":
            field = w.RadioButtons(options=[(c, i) for i, c in enumerate(q.choices)], value=None, layout=w.Layout(width="auto"))
            read = lambda field=field: field.value  # noqa: E731
        elif q.kind == "multiple":
            boxes = [w.Checkbox(value=False, description=c, indent=False) for c in q.choices]
            field = w.VBox(boxes)
            read = lambda boxes=boxes: [i for i, b in enumerate(boxes) if b.value]  # noqa: E731
        else:
            field = w.Text(value="", placeholder="a number", layout=w.Layout(width="160px"))
            read = lambda field=field: field.value  # noqa: E731
        button = w.Button(description="Check", button_style="primary", layout=w.Layout(width="90px"))
        feedback = w.HTML()

        def on_click(_, n=n, q=q, read=read, feedback=feedback):
            ok = q.check(read())
            results[n] = ok
            verdict = "<span style='color:green'>✔ Right.</span>" if ok else "<span style='color:#c00'>✘ Not quite.</span>"
            feedback.value = f"{verdict} {html.escape(q.explanation)}"
            update_score()

        button.on_click(on_click)
        items.append(w.VBox([prompt, field, w.HBox([button, feedback])], layout=w.Layout(margin="0 0 12px 0")))
    update_score()

    return widget_box([w.HTML(f"<h3>Quiz: {html.escape(bank.title)}</h3>"), *items, score],
                      text=lambda: bank_text(bank), css_class="xferlib-quiz")


def widget_box(children, text, css_class: str):
    """A VBox of ``children`` that front ends without widgets (a saved notebook, nbval, a
    terminal) show as the plain text ``text()`` returns at display time."""
    import ipywidgets as w

    class TextFallbackBox(w.VBox):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            if isinstance(bundle, dict):
                bundle["text/plain"] = text()
            return bundle

    box = TextFallbackBox(children)
    box.add_class(css_class)
    return box


def quiz(stem: str, root=None, widgets: bool | None = None):
    """Show a quiz bank: interactive widgets in Jupyter (check button, feedback with the
    explanation, running score) inside a Jupyter kernel, plain text elsewhere."""
    bank = load_bank(stem, root)
    if widgets is None:
        widgets = in_kernel()
    if widgets:
        try:
            box = _widget(bank)
        except ImportError:
            widgets = False
        else:
            from IPython.display import display

            display(box)
            return None
    text = bank_text(bank)
    print(text)
    return None


# --------------------------------------------------------------------------- terminal drill
# What a closed or missing stdin raises from input(): EOFError at the end of a pipe, ValueError
# or OSError "I/O operation on closed file", RuntimeError "input(): lost sys.stdin".
_INPUT_GONE = (EOFError, OSError, ValueError, RuntimeError)


def _parse_response(question: Question, text: str):
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


def drill(items, ask=input, out=print, results=None) -> dict[str, list[bool]]:
    """Ask each ``(topic, question)``; return the results per topic. ``q`` or the end of the
    input stops early. The marks go into ``results`` as they come, so a caller that passes
    its own dict still has the score so far when Ctrl-C interrupts."""
    results = {} if results is None else results
    for n, (topic, q) in enumerate(items, 1):
        out(f"\n[{n}/{len(items)}] ({topic}) {q.prompt}")
        for i, choice in enumerate(q.choices):
            out(f"   {chr(97 + i)}) {choice}")
        out({"single": "   (one letter)", "multiple": "   (all letters that apply, e.g. a,c)", "numeric": "   (a number)"}[q.kind])
        while True:
            try:
                text = ask("your answer (q to stop): ")
            except _INPUT_GONE:
                out(f"\n(input ended after {n - 1} of {len(items)} questions)")
                return results
            if text.strip().lower() in ("q", "quit", "exit"):
                return results
            try:
                response = _parse_response(q, text)
                break
            except ValueError as err:
                out(f"   ({err}; try again)")
        ok = q.check(response)
        results.setdefault(topic, []).append(ok)
        out(("   Right. " if ok else f"   Not quite: the answer is {q.answer_text()}. ") + q.explanation)
    return results


def report(results: dict[str, list[bool]], out=print) -> float:
    """Print the score per topic and in total; return the fraction right."""
    total = sum(len(v) for v in results.values())
    right = sum(sum(v) for v in results.values())
    out("\nScore by topic:")
    for topic, marks in sorted(results.items()):
        out(f"  {topic:<40} {sum(marks)}/{len(marks)}")
    out(f"Total: {right}/{total}" + (f" ({right / total:.0%})" if total else ""))
    return right / total if total else 0.0


def _count(text: str) -> int:
    """argparse type for --random: a traceback from random.sample is no way to say "at least 1"."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def main(argv=None, ask=input) -> int:
    """The command line; ``ask`` reads each answer (``input`` in a terminal, a stub in tests).
    Returns the exit status: 0, 2 for a bad bank, 130 after Ctrl-C (the score so far shown)."""
    parser = argparse.ArgumentParser(prog="python -m xferlib.quizzes", description="Drill the course's quiz banks in a terminal.")
    parser.add_argument("stems", nargs="*", help="bank names, e.g. 02_feature_extraction")
    parser.add_argument("--all", action="store_true", help="draw from every bank")
    parser.add_argument("--random", type=_count, metavar="N", help="ask N questions drawn at random")
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
    results: dict[str, list[bool]] = {}
    try:
        drill(items, ask=ask, results=results)
    except KeyboardInterrupt:
        print("\n(stopped)")
        report(results)
        return 130
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
