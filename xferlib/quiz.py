"""``python -m xferlib.quiz``: the old name of the terminal drill, kept as an alias of
``python -m xferlib.quizzes``.

It only runs as a script. Importing it would bind ``xferlib.quiz`` to this module and hide
the function ``xl.quiz``, so an import is refused. ``python -m`` runs the file as
``__main__`` without registering ``xferlib.quiz``, so the alias hides nothing.
"""

import sys

if __name__ != "__main__":
    raise ImportError("xferlib.quiz is not a module to import: xl.quiz is the function that shows a quiz, "
                      "and the terminal drill is `python -m xferlib.quizzes`")

from .quizzes import run  # noqa: E402

sys.exit(run())
