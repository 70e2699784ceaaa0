"""The class vocabulary: which classes a run labels and which words CLIP scores for each (no torch).

Parsed once (from ``--classes``/``--classes-file``/``--background`` or a label folder's record) and
handed to everything that needs the class layout, so the layout's rules live here only:

* class ids in order; with background words, one merged class named ``background`` takes id 0
  and the name is then reserved (any case) for it;
* a class may carry synonyms (named by its first word; it scores the max over its words), and a
  class file line ``"person, person in shirt"`` is such a class (SCLIP's class files);
* names are stripped, blanks dropped; duplicates are refused ignoring case, since CLIP's
  tokenizer lowercases (``red`` and ``Red`` would be one class under two ids);
* at most 255 classes (ids 0..254): label maps are 8-bit with 255 marking ignore.

Each prompt (a background word or a class word) belongs to one class: ``groups`` lists the class
id of every prompt, in prompt order (the engine turns it into the tensor it reduces with).
"""

from __future__ import annotations

import unicodedata

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, Union

from .constants import IGNORE_INDEX
from .errors import MaskCLIPError

if TYPE_CHECKING:
    from .record import LabelRecord

BACKGROUND = "background"
BOM = "\ufeff"

ClassSpec = Union[str, Sequence[str]]  # a class name, or [name, *synonyms]


def check_class_count(n: int) -> None:
    """Label maps are 8-bit PNGs with 255 marking ignore, so at most 255 classes (ids 0..254) fit."""
    if n > IGNORE_INDEX:
        raise MaskCLIPError(f"{n} classes given; at most {IGNORE_INDEX} fit an 8-bit label map (255 marks ignore).")


def is_background(name: str) -> bool:
    """Whether ``name`` is the reserved background name (CLIP reads it in any case)."""
    return name.strip().lower() == BACKGROUND


def background_words(words: Iterable[str]) -> tuple[str, ...]:
    """The words merged into the background class: stripped, blanks dropped (as typed, ``--background
    "sky, wall"`` gives them with spaces; the record keeps what was typed)."""
    return tuple(w.strip() for w in words if w.strip())


def parse_class_lines(text: str) -> list[ClassSpec]:
    """The classes of a class file's text: one per line, ``#`` starts a comment, blank lines skipped,
    a line with commas is one class with synonyms; a UTF-8 byte-order mark is not part of a name."""
    specs: list[ClassSpec] = []
    for line in text.removeprefix(BOM).splitlines():
        words = [w.strip() for w in line.split("#")[0].split(",") if w.strip()]
        if words:
            specs.append(words if len(words) > 1 else words[0])
    return specs


def read_class_text(path: Path) -> str:
    """The text of a classes file (a leading byte-order mark dropped); a MaskCLIPError when it is
    missing or not UTF-8 text."""
    if not path.is_file():
        raise MaskCLIPError(f"Classes file not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MaskCLIPError(f"Cannot read classes file {path}: {exc}") from exc


def class_name(spec: ClassSpec) -> str:
    """The name of a class: the spec itself, or its first word (the others are synonyms)."""
    return spec.strip() if isinstance(spec, str) else spec[0].strip()


def _class_words(spec: ClassSpec) -> tuple[str, ...]:
    return tuple(w.strip() for w in ([spec] if isinstance(spec, str) else spec) if w.strip())


@dataclass(frozen=True)
class ClassVocabulary:
    """Classes by id and the words CLIP scores for them. Build it with :meth:`build` (user input)
    or :meth:`from_record` (a label folder); both check every rule of the module docstring."""

    classes: tuple[tuple[str, ...], ...]  # foreground classes: (name, *synonyms) each
    background: tuple[str, ...] = ()  # words merged into class 0 ("background"); none: no such class

    def __post_init__(self) -> None:
        names = [w[0] for w in self.classes if w]
        if not names or len(names) != len(self.classes):
            raise MaskCLIPError("No classes given: pass --classes NAME [NAME ...] or --classes-file FILE.")
        if self.background and any(is_background(n) for n in names):
            raise MaskCLIPError(f"'{BACKGROUND}' is reserved for the --background class; rename that class.")
        folded = [n.lower() for n in names]
        dupes = [n for n in names if folded.count(n.lower()) > 1]
        if dupes:
            same_case = all(names.count(n) > 1 for n in dupes)
            hint = "" if same_case else " (CLIP's tokenizer ignores case, so they are one class)"
            raise MaskCLIPError(f"Duplicate class names: {', '.join(sorted(set(dupes)))}{hint}.")
        check_class_count(len(self.names))

    @classmethod
    def build(cls, classes: Sequence[ClassSpec], background: Iterable[str] = ()) -> ClassVocabulary:
        """From user input: class names or synonym lists (stripped, blanks dropped) and the words merged
        into a background class with id 0 (none: no background class). Refused here, for new label
        folders only: control characters in a word (a line break or tab breaks the exports' one-name-
        per-line files and is no prompt), and a background word that is also a class's word (the two
        would split those pixels between them)."""
        words, bg = tuple(w for w in map(_class_words, classes) if w), background_words(background)
        odd = [w for w in (*(w for c in words for w in c), *bg) if any(unicodedata.category(ch) == "Cc" for ch in w)]
        if odd:
            raise MaskCLIPError(f"Class names cannot hold control characters (line breaks, tabs): {', '.join(map(repr, odd))}.")
        both = sorted({w for c in words for w in c if w.lower() in {b.lower() for b in bg}})
        if both:
            raise MaskCLIPError(f"{', '.join(both)}: both a class and a --background word; give it as one of the two.")
        return cls(words, bg)

    @classmethod
    def from_names(cls, names: Sequence[str], background: Iterable[str] = (),
                   synonyms: dict[str, Sequence[str]] | None = None) -> ClassVocabulary:
        """From class names by id as a record stores them (``background`` first when background words
        were merged) and the recorded synonyms (``{name: [name, *synonyms]}``)."""
        bg = background_words(background)
        if bg and list(names[:1]) != [BACKGROUND]:
            raise MaskCLIPError(f"Background words are recorded but class 0 is not '{BACKGROUND}'.")
        fg, synonyms = list(names[1 if bg else 0:]), synonyms or {}
        words = tuple(tuple(synonyms.get(n) or (n,)) for n in fg)
        wrong = [n for n, w in zip(fg, words) if w[0] != n]
        if wrong:
            raise MaskCLIPError(f"The recorded synonyms of {', '.join(wrong)} do not start with the class name.")
        return cls(words, bg)

    @classmethod
    def from_record(cls, record: LabelRecord) -> ClassVocabulary:
        """The vocabulary a label folder was made with (its classes, background words and synonyms)."""
        return cls.from_names(record.classes, record.background, record.synonyms)

    @property
    def names(self) -> list[str]:
        """Class names by id (``background`` first when background words are merged)."""
        return ([BACKGROUND] if self.background else []) + [w[0] for w in self.classes]

    @property
    def synonyms(self) -> dict[str, list[str]]:
        """``{name: [name, *synonyms]}`` of the classes that have synonyms, as the record stores them."""
        return {w[0]: list(w) for w in self.classes if len(w) > 1}

    @property
    def prompts(self) -> list[str]:
        """Every word CLIP scores: the background words, then each class's words."""
        return list(self.background) + [p for w in self.classes for p in w]

    @property
    def groups(self) -> list[int]:
        """The class id of each prompt (the max over a class's prompts is its score)."""
        first = 1 if self.background else 0
        return [0] * len(self.background) + [i + first for i, w in enumerate(self.classes) for _ in w]

    def __len__(self) -> int:
        return len(self.classes) + bool(self.background)

    def ids(self, names: Sequence[str], unknown: str = "Classes not in the vocabulary") -> list[int]:
        """The class ids of ``names``; ``unknown`` starts the error naming those that are not classes."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise MaskCLIPError(f"{unknown}: {', '.join(missing)}.")
        return [self.names.index(n) for n in names]

    def subset(self, names: Sequence[str], unknown: str = "Classes not in the vocabulary") -> ClassVocabulary:
        """Only the classes ``names`` (in that order; the merged background, with its words, when it is
        among them): zero-shot labelling over the unseen classes. Map its ids back with :meth:`ids`."""
        self.ids(names, unknown)
        keep_bg = bool(self.background) and BACKGROUND in names
        chosen = [w for n in names for w in self.classes if w[0] == n]
        if not chosen:
            raise MaskCLIPError("A class subset needs at least one class besides the merged background.")
        return ClassVocabulary(tuple(chosen), self.background if keep_bg else ())
