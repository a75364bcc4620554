"""The demo's two checks of a generated answer, each a pure function of the text and the row's accepted answers:

- **format** (:func:`one_sentence`): what the demo teaches, one sentence of at most :data:`MAX_WORDS` words and
  nothing around it (no greeting, no filler, no second sentence);
- **fact** (:func:`states_answer`): an accepted answer appears anywhere in the reply, whatever its form.

A preference run can win on the first and lose on the second (a model that learns to answer bare often answers
wrongly), so every report of the demo gives both::

    hf-dpo eval outputs/demo --dataset hf_dpo:concise_qa --generate 80 \\
        --scorer hf_dpo.tools.scoring:one_sentence hf_dpo.tools.scoring:states_answer

:func:`bare_answer` is the exact match of the reply against the accepted answers, the format of the earlier demo
(bare answers, ``hf_dpo:bare_qa``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_WORDS = 16  # the longest chosen reply of the demo data has 13 words (checked when the data is made)

_QUOTES = "\"'`*_“”‘’«»"
_TRAILING = ".!?,;:"
_ARTICLE = re.compile(r"^(?:the|a|an)\s+")
# A full stop, question or exclamation mark (closing quotes allowed) followed by a space: where a sentence may end.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)]*\s+")
# Words whose full stop ends an abbreviation, not a sentence ("D.C.", "U.S.", "Dr.").
_ABBREVIATION = re.compile(r"(?:^|\s)(?:[A-Za-z]\.[A-Za-z.]+|Mr|Mrs|Ms|Dr|St|Mt|vs|etc)\.[\"'”’)]*\s+$")
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.\s+$")  # "J. " in "J. K. Rowling", or the answer "B. " ending a sentence
# Words that start a new sentence after an abbreviation or a one-letter answer ("The answer is B. The ...", "...
# Washington, D.C. I hope ..."); none of them follows an initial in a name
_OPENERS = {"the", "it", "its", "this", "that", "i", "a", "an", "in", "he", "she", "they", "we", "you", "let", "sure"}
_OPENERS |= {"of", "good", "great", "hope", "so", "yes", "no", "and", "but", "there", "these", "those", "chemical"}


def normalise(text: str) -> str:
    """Canonical form for exact-match scoring.

    Lower-cases, collapses whitespace, strips surrounding quotes (and markdown emphasis), trailing punctuation and
    one leading article ("the", "a", "an").
    """
    text = " ".join(text.lower().split())
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip(_QUOTES).rstrip(_TRAILING).strip()
    return _ARTICLE.sub("", text, count=1).strip()


def sentences(text: str, names: Sequence[str] = ()) -> list[str]:
    """``text`` cut into sentences at ``.``, ``!`` or ``?`` followed by a space, except after an initial or an
    abbreviation; ``names`` (a row's accepted answers: "J. K. Rowling", "Washington, D.C.", "C") are read as words,
    so their full stops are theirs and a full stop after them ends the sentence.

    >>> sentences("Great question! The Hobbit was written by J. R. R. Tolkien. Enjoy.")
    ['Great question!', 'The Hobbit was written by J. R. R. Tolkien.', 'Enjoy.']
    >>> sentences("That would be C. Carbon has the chemical symbol C.", names=["C"])
    ['That would be C.', 'Carbon has the chemical symbol C.']
    """
    text = " ".join(text.split()) + " "  # the space lets the last full stop end a sentence as the others do
    placeholders = {}
    for index, name in enumerate(sorted({name for name in names if name.strip()}, key=len, reverse=True)):
        placeholder = f"Name{index}x"  # a word of its own: never an initial, never an abbreviation
        pattern = rf"(?<![\w'’]){re.escape(name.removesuffix('.'))}(?![\w'’])"
        text, found = re.subn(pattern, placeholder, text)
        if found:
            placeholders[placeholder] = name.removesuffix(".")
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        piece, following = text[start : match.end()], text[match.end() :].split(" ", 1)[0]
        shortened = _ABBREVIATION.search(piece) or _INITIAL.search(piece)
        if not shortened or following.strip("\"'“‘").lower() in _OPENERS:
            pieces.append(piece.strip())
            start = match.end()
    if text[start:].strip():
        pieces.append(text[start:].strip())
    for placeholder, name in placeholders.items():
        pieces = [piece.replace(placeholder, name) for piece in pieces]
    return pieces


def one_sentence(response: str, answers: Sequence[str] = ()) -> bool:
    """The format the demo teaches: exactly one sentence (a bare answer counts as one) of at most
    :data:`MAX_WORDS` words, with nothing before or after it; ``answers`` as :func:`sentences` reads them."""
    return len(sentences(response, answers)) == 1 and len(response.split()) <= MAX_WORDS


def states_answer(response: str, answers: list[str]) -> bool:
    """Whether an accepted answer appears in ``response`` as whole words, case aside; an answer of one or two
    characters with a capital, a chemical symbol, must match in case ("He" is helium, "he" is not)."""
    for answer in answers:
        symbol = len(answer) <= 2 and answer != answer.lower()
        wanted, text = (answer, response) if symbol else (normalise(answer), response.lower())
        # whole words: no letter, digit or apostrophe before ("S" is not in "Earth's"), no letter or digit after ("4"
        # is not in "14"; "Shakespeare's" has "Shakespeare")
        if re.search(rf"(?<![\w'’]){re.escape(wanted)}(?!\w)", " ".join(text.split())):
            return True
    return False


def bare_answer(response: str, answers: list[str]) -> bool:
    """True iff the whole response, normalised, equals one accepted answer; a sentence around it is wrong."""
    got = normalise(response)
    return any(got == normalise(answer) for answer in answers)
