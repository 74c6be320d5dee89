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

``xl.quiz("02_feature_extraction")`` renders a bank; ``python -m xferlib.quiz`` drills banks
in a terminal.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, (str, int, float)) for c in choices):
            _fail(path, where, "a choice question needs 'choices': a list of at least two answers")
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
        if not isinstance(answer, (int, float)) or isinstance(answer, bool):
            _fail(path, where, f"a numeric answer must be a number, got {answer!r}")
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
            _fail(path, where, f"tolerance must be a number of at least 0, got {tolerance!r}")
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
    """Load and validate a bank by stem (``"02_feature_extraction"``) or path."""
    path = Path(stem_or_path)
    if path.suffix not in (".yml", ".yaml"):
        path = quiz_dir(root) / f"{stem_or_path}.yml"
    if not path.is_file():
        available = ", ".join(list_banks(path.parent)) if path.parent.is_dir() else "none"
        raise QuizError(f"{path}: no such quiz bank (available: {available or 'none'})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and getattr(shell, "kernel", None) is not None
    except ImportError:
        return False


def quiz(stem: str, root=None, widgets: bool | None = None):
    """Show a quiz bank: interactive widgets in Jupyter (check button, feedback with the
    explanation, running score) inside a Jupyter kernel, plain text elsewhere."""
    bank = load_bank(stem, root)
    if widgets is None:
        widgets = _in_kernel()
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
