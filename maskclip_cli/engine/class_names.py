"""Class lists as users give them: names, synonyms, the reserved background name (no torch)."""

from __future__ import annotations

from typing import Sequence, Union

from ..core.errors import MaskCLIPError

BACKGROUND = "background"


ClassSpec = Union[str, Sequence[str]]


def class_synonyms(classes: Sequence[ClassSpec]) -> list[list[str]]:
    """Each class as ``[name, *synonyms]``: a string is a class with one word, a sequence a class
    named by its first word whose score is the max over all of them (SCLIP's class files). Words
    are stripped; an empty list or duplicate names are refused (they would merge label ids)."""
    words = [[w.strip() for w in ([c] if isinstance(c, str) else c) if w.strip()] for c in classes]
    words = [w for w in words if w]
    names = [w[0] for w in words]
    if not names:
        raise MaskCLIPError("No classes given: pass --classes NAME [NAME ...] or --classes-file FILE.")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MaskCLIPError(f"Duplicate class names: {', '.join(dupes)}.")
    return words


def synonym_words(line: str) -> ClassSpec:
    """One line of a class file: ``"person, person in shirt"`` -> a class with synonyms; a line
    without a comma stays a plain name."""
    words = [w.strip() for w in line.split(",") if w.strip()]
    return words if len(words) > 1 else line.strip()


def validate_classes(classes: Sequence[ClassSpec]) -> list[str]:
    """The class names (first words) of valid ``classes``; see :func:`class_synonyms`."""
    return [w[0] for w in class_synonyms(classes)]
