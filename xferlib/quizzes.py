"""Quizzes with feedback: YAML banks, validated on load, shown as self-contained HTML or as text.

A bank is ``quizzes/<notebook-stem>.yml``::

    title: Feature extraction
    questions:
      - prompt: Which layers does feature extraction train?
        kind: single            # single | multiple | numeric
        choices:                # each choice says why it is right, or the misconception behind it
          - text: Every layer, at a small learning rate
            feedback: That is fine-tuning; feature extraction leaves the backbone as it is.
          - text: Only the new head
            feedback: Right. The backbone is frozen and computes the same features every epoch.
        answer: 1               # index (single), list of indices (multiple), number (numeric)
        explanation: The backbone is frozen; only the new head learns.
        topic: BatchNorm        # optional: the terminal drill scores by topic (else by bank)
      - prompt: ...
        kind: numeric
        answer: 0.5
        tolerance: 0.01         # optional, numeric only
        explanation: ...

Choices are shown shuffled, in an order fixed per learner (``$XFERLIB_LEARNER``, else the
user and machine name) and per question, so a re-run cell shows the same order and the
answer key follows the shuffle. ``xl.quiz("02_feature_extraction")`` renders a bank: in a
notebook as HTML with its own small script (works in JupyterLab, VS Code, Colab, a static
HTML export or a web page, with no kernel and no network; its answers stay readable with
JavaScript off), elsewhere as text. In a terminal::

    python -m xferlib.quizzes 02_feature_extraction      # drill one bank
    python -m xferlib.quizzes --all --random 10           # a mock interview from every bank
    python -m xferlib.quizzes --list                      # what is there
    python -m xferlib.quizzes --check                     # validate every bank and exit
    python -m xferlib.quizzes --stats                     # can a test-wise guesser pass?

Answer with a letter (``b``), letters for several (``a,c``), or a number; ``q`` quits.
The command lives here rather than in a module ``xferlib.quiz``: importing a submodule of
that name would replace the function ``xl.quiz`` with the module. This module does not
import PyTorch, so the command starts in a blink.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import html
import json
import math
import os
import random
import socket
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .display import html_id, html_text, in_kernel, show_html

KINDS = ("single", "multiple", "numeric")
QUIZ_ENV = "XFERLIB_QUIZZES"
LEARNER_ENV = "XFERLIB_LEARNER"
_ALLOWED_KEYS = {"prompt", "kind", "choices", "answer", "tolerance", "explanation", "topic"}


class QuizError(ValueError):
    """A quiz bank is missing or malformed; the message names the file and the question."""


@dataclass(frozen=True)
class Choice:
    text: str
    feedback: str  # why this choice is right, or the misconception behind it


@dataclass
class Question:
    prompt: str
    kind: str
    answer: object
    explanation: str
    choices: list[Choice] = field(default_factory=list)
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

    @property
    def keys(self) -> list[int]:
        """The indices of the right choices (empty for a numeric question)."""
        return [self.answer] if self.kind == "single" else list(self.answer) if self.kind == "multiple" else []

    def answer_text(self) -> str:
        if self.kind in ("single", "multiple"):
            return "; ".join(self.choices[i].text for i in self.keys)
        return f"{self.answer:g}" + (f" (± {self.tolerance:g})" if self.tolerance else "")

    def shuffled(self, seed) -> "Question":
        """The same question with its choices in an order fixed by ``seed``; the key follows."""
        if not self.choices:
            return self
        order = list(range(len(self.choices)))
        random.Random(seed).shuffle(order)
        new = {old: n for n, old in enumerate(order)}
        answer = new[self.answer] if self.kind == "single" else sorted(new[i] for i in self.answer)
        return replace(self, choices=[self.choices[i] for i in order], answer=answer)


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


def _parse_choice(path, where: str, n: int, raw) -> Choice:
    """A choice is ``{text: ..., feedback: ...}``; both must be text (a bare YAML ``yes`` or
    ``~`` is a boolean or null, so it is refused with a hint to quote it)."""
    label = f"choice {chr(97 + n)}"
    if not isinstance(raw, dict):
        _fail(path, where, f"{label} must be a mapping with 'text' and 'feedback' (the feedback says why it "
                           f"is right or which misconception it holds), got {raw!r}")
    unknown = set(raw) - {"text", "feedback"}
    if unknown:
        _fail(path, where, f"{label}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: feedback, text")
    for key in ("text", "feedback"):
        value = raw.get(key)
        # YAML 1.1 reads unquoted yes/no/on/off as booleans and ~ or nothing as null
        if isinstance(value, bool) or (value is None and key in raw):
            _fail(path, where, f"{label}: {key} {value} is a YAML {'boolean' if value is not None else 'null'}, not text: "
                               "put it in quotes, e.g. 'yes', 'no', 'null'")
        if isinstance(value, (int, float)) and key == "text" and math.isfinite(value):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            _fail(path, where, f"{label} needs non-empty '{key}' text, got {value!r}")
    return Choice(str(raw["text"]).strip(), raw["feedback"].strip())


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
        choices = [_parse_choice(path, where, n, c) for n, c in enumerate(choices)]
        texts = [c.text for c in choices]
        if len(set(texts)) != len(texts):
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


# --------------------------------------------------------------------------- shuffling
def learner() -> str:
    """Who is taking the quiz: ``$XFERLIB_LEARNER``, else ``user@machine``. It seeds the order
    of the choices, so each learner sees one order, the same every time a cell is re-run."""
    name = os.environ.get(LEARNER_ENV, "").strip()
    if name:
        return name
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = "learner"
    return f"{user}@{socket.gethostname()}"


def shuffled(bank: Bank, who: str | None = None) -> Bank:
    """The bank with every question's choices in the order ``who`` (default :func:`learner`)
    sees; the order of a question depends on the learner, the bank and its prompt only."""
    who = learner() if who is None else who

    def seed(q):
        return int.from_bytes(hashlib.sha256(f"{who}\0{bank.stem}\0{q.prompt}".encode()).digest()[:8], "big")

    return replace(bank, questions=[q.shuffled(seed(q)) for q in bank.questions])


# --------------------------------------------------------------------------- bank statistics
def _longest(q: Question) -> bool:
    lengths = [len(c.text) for c in q.choices]
    return lengths[q.answer] == max(lengths) and lengths.count(max(lengths)) == 1


def _shortest(q: Question) -> bool:
    lengths = [len(c.text) for c in q.choices]
    return lengths[q.answer] == min(lengths) and lengths.count(min(lengths)) == 1


def bank_stats(bank: Bank) -> dict:
    """What a test-wise guesser could exploit, as written in the bank (before shuffling): how
    often a single-choice key is the longest or the shortest choice, where the keys sit, how
    many multiple-choice keys are "all but one" or "all", how many items are numeric, and how
    long keys are against the other choices."""
    single = [q for q in bank.questions if q.kind == "single"]
    multiple = [q for q in bank.questions if q.kind == "multiple"]
    numeric = [q for q in bank.questions if q.kind == "numeric"]
    ratios = []
    for q in single:
        others = [len(c.text) for i, c in enumerate(q.choices) if i != q.answer]
        ratios.append(len(q.choices[q.answer].text) / (sum(others) / len(others)))
    return {
        "questions": len(bank), "single": len(single), "multiple": len(multiple), "numeric": len(numeric),
        "longest_is_key": sum(map(_longest, single)),
        "shortest_is_key": sum(map(_shortest, single)),
        "key_positions": dict(sorted(Counter(chr(97 + q.answer) for q in single).items())),
        "all_but_one": sum(len(q.answer) == len(q.choices) - 1 for q in multiple),
        "all_right": sum(len(q.answer) == len(q.choices) for q in multiple),
        "chance": sum(1 / len(q.choices) for q in single) / len(single) if single else 0.0,
        "key_length_ratio": sorted(ratios)[len(ratios) // 2] if ratios else 0.0,  # median, key / mean distractor
    }


def stats_table(banks) -> str:
    """:func:`bank_stats` of every bank as a table, one line per bank and a total."""
    rows = [(b.stem, bank_stats(b)) for b in banks]
    head = f"{'bank':<26} {'items':>5} {'1/n/#':>8} {'longest':>8} {'shortest':>8} {'keys a-b-c-d':>13} {'all-but-1':>9} {'len ratio':>9}"
    lines = [head]
    for stem, s in rows:
        pos = "-".join(str(s["key_positions"].get(k, 0)) for k in "abcd")
        lines.append(f"{stem:<26} {s['questions']:>5} {s['single']:>2}/{s['multiple']}/{s['numeric']:<3} "
                     f"{s['longest_is_key']:>4}/{s['single']:<3} {s['shortest_is_key']:>4}/{s['single']:<3} {pos:>13} "
                     f"{s['all_but_one']:>5}/{s['multiple']:<3} {s['key_length_ratio']:>9.2f}")
    total = {k: sum(s[k] for _, s in rows) for k in ("questions", "single", "multiple", "numeric", "longest_is_key",
                                                      "shortest_is_key", "all_but_one")}
    keys = Counter()
    for _, s in rows:
        keys.update(s["key_positions"])
    pos = "-".join(str(keys.get(k, 0)) for k in "abcd")
    lines.append(f"{'all banks':<26} {total['questions']:>5} {total['single']:>2}/{total['multiple']}/{total['numeric']:<3} "
                 f"{total['longest_is_key']:>4}/{total['single']:<3} {total['shortest_is_key']:>4}/{total['single']:<3} {pos:>13} "
                 f"{total['all_but_one']:>5}/{total['multiple']:<3}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- text
_HINTS = {"single": "pick one", "multiple": "pick all that apply", "numeric": "give a number"}


def _letters(indices) -> str:
    return ", ".join(chr(97 + i) for i in indices)


def bank_text(bank: Bank, with_answers: bool = True) -> str:
    """The bank as plain text: questions and choices, then the answers with explanations and
    what each choice says (render a :func:`shuffled` bank for a learner's order)."""
    lines = [f"Quiz: {bank.title} ({len(bank)} questions)", ""]
    for n, q in enumerate(bank.questions, 1):
        lines.append(f"{n}. {q.prompt}  [{_HINTS[q.kind]}]")
        lines += [f"   {chr(97 + i)}) {c.text}" for i, c in enumerate(q.choices)]
        lines.append("")
    if with_answers:
        lines.append("Answers")
        for n, q in enumerate(bank.questions, 1):
            letters = f"{_letters(q.keys)}) " if q.keys else ""
            lines.append(f"{n}. {letters}{q.answer_text()} — {q.explanation}")
            lines += [f"   {chr(97 + i)}) {c.feedback}" for i, c in enumerate(q.choices)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML
_QUIZ_CSS = """
#{id} {{ max-width: 52em; }}
#{id} fieldset {{ border: 1px solid var(--jp-border-color1, #999); border-radius: 4px; margin: 0 0 0.8em 0; padding: 0.4em 0.8em 0.6em; }}
#{id} legend {{ font-weight: bold; padding: 0 0.3em; }}
#{id} .xlq-hint {{ font-weight: normal; font-style: italic; }}
#{id} .xlq-choice {{ margin: 0.25em 0; }}
#{id} .xlq-choice label {{ cursor: pointer; }}
#{id} .xlq-fb {{ margin: 0.15em 0 0.35em 1.8em; padding-left: 0.5em; border-left: 3px double currentColor; }}
#{id} .xlq-mark {{ font-weight: bold; }}
#{id} .xlq-verdict {{ margin-top: 0.3em; font-weight: bold; }}
#{id} .xlq-right {{ border-width: 3px; border-style: solid; }}
#{id} .xlq-wrong {{ border-width: 2px; border-style: dashed; }}
#{id} button {{ margin-top: 0.4em; padding: 0.2em 1em; }}
#{id} button:focus-visible, #{id} input:focus-visible {{ outline: 3px solid currentColor; outline-offset: 2px; }}
"""

_QUIZ_JS = """
(function () {
  var root = document.getElementById("{id}");
  if (!root || root.getAttribute("data-ready")) { return; }
  root.setAttribute("data-ready", "1");
  var nojs = root.querySelector(".xlq-nojs");
  if (nojs) { nojs.hidden = true; }
  var questions = root.querySelectorAll(".xlq-q"), first = {};
  function score() {
    var right = 0, answered = 0, k;
    for (k in first) { answered += 1; if (first[k]) { right += 1; } }
    root.querySelector(".xlq-score").textContent = "Score: " + right + " of " + questions.length +
      " right at the first try (" + answered + " answered)";
  }
  Array.prototype.forEach.call(questions, function (q, n) {
    var kind = q.getAttribute("data-kind"), key = JSON.parse(q.getAttribute("data-key"));
    var verdict = q.querySelector(".xlq-verdict"), explain = q.querySelector(".xlq-explain");
    function check() {
      var ok, picked = [], missed = 0;
      Array.prototype.forEach.call(q.querySelectorAll(".xlq-fb"), function (f) { f.hidden = true; });
      Array.prototype.forEach.call(q.querySelectorAll(".xlq-mark"), function (m) { m.textContent = ""; });
      if (kind === "numeric") {
        var value = parseFloat(q.querySelector("input").value.replace(",", "."));
        if (isNaN(value)) { verdict.textContent = "Type a number first."; return; }
        ok = Math.abs(value - key) <= parseFloat(q.getAttribute("data-tolerance")) + 1e-12;
      } else {
        Array.prototype.forEach.call(q.querySelectorAll("input"), function (box) {
          if (box.checked) { picked.push(parseInt(box.value, 10)); }
        });
        if (!picked.length) { verdict.textContent = kind === "single" ? "Pick an answer first." : "Pick at least one answer first."; return; }
        picked.forEach(function (i) {
          var choice = q.querySelector("[data-choice='" + i + "']");
          choice.querySelector(".xlq-mark").textContent = key.indexOf(i) >= 0 ? "\\u2714 right: " : "\\u2718 wrong: ";
          choice.querySelector(".xlq-fb").hidden = false;
        });
        key.forEach(function (i) { if (picked.indexOf(i) < 0) { missed += 1; } });
        ok = missed === 0 && picked.every(function (i) { return key.indexOf(i) >= 0; });
      }
      if (!(n in first)) { first[n] = ok; }
      verdict.textContent = ok ? "\\u2714 Right." : "\\u2718 Not quite" +
        (kind === "multiple" && missed ? " (" + missed + " right answer" + (missed > 1 ? "s" : "") + " not picked)" : "") +
        ": read the feedback, then try again. The answers are listed at the end.";
      explain.hidden = !ok;
      q.className = "xlq-q " + (ok ? "xlq-right" : "xlq-wrong");
      score();
    }
    q.querySelector(".xlq-check").addEventListener("click", check);
    q.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && event.target.tagName === "INPUT") { event.preventDefault(); check(); }
    });
  });
  score();
})();
"""


def bank_html(bank: Bank) -> str:
    """The bank as one self-contained piece of HTML: a form per question (native radio buttons,
    check boxes and text fields, so a keyboard works), a Check button, feedback for each picked
    choice marked with ✔/✘ and words (not colour alone), a running score, and the answers in a
    ``<details>`` list that needs no JavaScript. Render a :func:`shuffled` bank for a learner."""
    uid = html_id("xlq", bank.stem, bank.title, *(q.prompt for q in bank.questions))
    out = [f'<div class="xferlib-quiz" id="{uid}">', f"<style>{_QUIZ_CSS.format(id=uid)}</style>",
           f"<h3>Quiz: {html_text(bank.title)}</h3>",
           '<p class="xlq-nojs"><i>Checking answers needs this cell to run (a saved, untrusted notebook shows the '
           "questions only); the answers are listed at the end.</i></p>"]
    for n, q in enumerate(bank.questions, 1):
        key = json.dumps(q.keys if q.kind != "numeric" else q.answer)
        out.append(f'<div class="xlq-q" data-kind="{q.kind}" data-key="{html.escape(key)}" data-tolerance="{q.tolerance!r}">'
                   f'<fieldset><legend>{n}. {html_text(q.prompt)} <span class="xlq-hint">({_HINTS[q.kind]})</span></legend>')
        if q.kind == "numeric":
            out.append(f'<label>Your answer: <input type="text" inputmode="decimal" size="12" aria-label="answer to question {n}"></label>')
        else:
            kind = "radio" if q.kind == "single" else "checkbox"
            for i, c in enumerate(q.choices):
                out.append(f'<div class="xlq-choice" data-choice="{i}"><label><input type="{kind}" name="{uid}-{n}" value="{i}"> '
                           f'<span class="xlq-mark" aria-live="polite"></span>{html_text(c.text)}</label>'
                           f'<div class="xlq-fb" hidden>{html_text(c.feedback)}</div></div>')
        out.append('<button type="button" class="xlq-check">Check</button>'
                   '<div class="xlq-verdict" role="status" aria-live="polite"></div>'
                   f'<div class="xlq-explain" hidden>{html_text(q.explanation)}</div></fieldset></div>')
    out.append(f'<p class="xlq-score" aria-live="polite">{len(bank)} questions</p>')
    out.append("<details><summary>Answers</summary><ol>")
    for q in bank.questions:
        letters = f"{_letters(q.keys)}) " if q.keys else ""
        out.append(f"<li><b>{letters}{html_text(q.answer_text())}</b>: {html_text(q.explanation)}</li>")
    out.append("</ol></details>")
    out.append(f"<script>{_QUIZ_JS.replace('{id}', uid)}</script></div>")
    return "\n".join(out)


def quiz(stem: str, root=None, interactive: bool | None = None, who: str | None = None) -> None:
    """Show a quiz bank with its choices in ``who``'s order (default :func:`learner`): HTML with
    checking, per-choice feedback and a score inside a notebook, plain text elsewhere."""
    bank = shuffled(load_bank(stem, root), who)
    if interactive is None:
        interactive = in_kernel()
    text = bank_text(bank)
    if interactive:
        show_html(bank_html(bank), text)
    else:
        print(text)


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
            out(f"   {chr(97 + i)}) {choice.text}")
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
        picked = [response] if q.kind == "single" else sorted(set(response)) if q.kind == "multiple" else []
        for i in picked:
            out(f"   {chr(97 + i)}) {'right' if i in q.keys else 'wrong'}: {q.choices[i].feedback}")
        if ok:
            out(f"   Right. {q.explanation}")
        else:
            letters = f"{_letters(q.keys)}) " if q.keys else ""
            out(f"   Not quite: the answer is {letters}{q.answer_text()}. {q.explanation}")
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
    parser.add_argument("--stats", action="store_true", help="what a test-wise guesser could exploit, per bank, and exit")
    parser.add_argument("--in-order", action="store_true", help="show the choices in the bank's order, not shuffled")
    args = parser.parse_args(argv)
    try:
        stems = list_banks(args.root) if (args.all or args.list or (args.check or args.stats) and not args.stems) else args.stems
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
    if args.stats:
        print(stats_table(banks))
        return 0
    if not args.in_order:
        banks = [shuffled(bank) for bank in banks]
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


def run() -> int:
    """``main()`` for a terminal: output piped into ``head`` that closes early ends quietly."""
    try:
        return main()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout again at exit
        return 0


if __name__ == "__main__":
    sys.exit(run())
