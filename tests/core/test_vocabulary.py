"""The class vocabulary: parsing, the background rule, duplicates, the 255 limit, groups, records, subsets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.core.record import LabelRecord, record_hash
from maskclip_cli.core.vocabulary import (
    BACKGROUND,
    ClassVocabulary,
    check_class_count,
    is_background,
    parse_class_lines,
    read_class_text,
)


def test_names_are_stripped_and_empty_lists_and_duplicates_refused():
    """Names are stripped; an empty list (or only blanks) and duplicates (also after stripping) fail."""
    assert ClassVocabulary.build([" cat", "dog ", ""]).names == ["cat", "dog"]
    for bad in ([], ["", "  "]):
        with pytest.raises(MaskCLIPError, match="No classes"):
            ClassVocabulary.build(bad)
    with pytest.raises(MaskCLIPError, match="Duplicate class names: cat"):
        ClassVocabulary.build(["cat", "dog", " cat"])


def test_classes_differing_only_in_case_are_refused():
    """`--classes red,Red`: CLIP's tokenizer lowercases, so both would be one class under two ids."""
    with pytest.raises(MaskCLIPError, match="Duplicate class names: Red, red .*ignores case"):
        ClassVocabulary.build(["red", "Red"])
    with pytest.raises(MaskCLIPError, match="Duplicate class names"):
        ClassVocabulary.build([["cat", "kitty"], "CAT"])


def test_class_file_lines_comments_and_synonyms():
    text = "# a comment\ncat\n\n  person, person in shirt ,  # trailing comment\ndog  # pet\n, ,\n"
    assert parse_class_lines(text) == ["cat", ["person", "person in shirt"], "dog"]


def test_bom_is_not_part_of_the_first_class_name(tmp_path):
    """A file saved by Notepad starts with a UTF-8 byte-order mark; it is not in the first name."""
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffcat\ndog\n".encode("utf-8"))
    assert parse_class_lines(read_class_text(path)) == ["cat", "dog"]
    assert parse_class_lines("\ufeffcat, kitty\ndog") == [["cat", "kitty"], "dog"]


def test_class_file_errors(tmp_path):
    with pytest.raises(MaskCLIPError, match="not found"):
        read_class_text(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe c\x00a\x00t\x00")
    with pytest.raises(MaskCLIPError, match="Cannot read classes file"):
        read_class_text(tmp_path / "bad.txt")


def test_background_is_merged_at_id_zero_and_its_name_reserved():
    vocab = ClassVocabulary.build(["cat", ["dog", "puppy"]], [" sky", "", "wall "])
    assert vocab.names == [BACKGROUND, "cat", "dog"] and len(vocab) == 3
    assert vocab.background == ("sky", "wall")
    assert vocab.prompts == ["sky", "wall", "cat", "dog", "puppy"]
    assert vocab.groups == [0, 0, 1, 2, 2]
    assert vocab.synonyms == {"dog": ["dog", "puppy"]}
    for name in (BACKGROUND, "Background", " BACKGROUND"):
        with pytest.raises(MaskCLIPError, match="reserved"):
            ClassVocabulary.build([name, "cat"], ["sky"])
    # without background words "background" is an ordinary class
    plain = ClassVocabulary.build([BACKGROUND, "cat"])
    assert plain.names == [BACKGROUND, "cat"] and plain.groups == [0, 1] and plain.background == ()
    assert is_background("Background ") and not is_background("backgrounds")


def test_groups_without_background_follow_the_prompts():
    vocab = ClassVocabulary.build([["a", "a1", "a2"], "b", ["c", "c1"]])
    assert vocab.prompts == ["a", "a1", "a2", "b", "c", "c1"]
    assert vocab.groups == [0, 0, 0, 1, 2, 2]
    assert [vocab.prompts[i] for i, g in enumerate(vocab.groups) if g == 2] == ["c", "c1"]


@pytest.mark.parametrize("background", [[], ["sky"]])
def test_255_classes_at_most(background):
    """255 ids (0..254) fit an 8-bit label map whose 255 marks ignore; the merged background counts."""
    fits = [f"c{i}" for i in range(255 - len(background))]
    assert len(ClassVocabulary.build(fits, background)) == 255
    with pytest.raises(MaskCLIPError, match="256 classes given; at most 255"):
        ClassVocabulary.build(fits + ["one more"], background)
    check_class_count(255)
    with pytest.raises(MaskCLIPError, match="256 classes"):
        check_class_count(256)


def _record(background: list[str], classes: list[str], synonyms: dict[str, list[str]]) -> LabelRecord:
    """A record as 0.2.0 writes it to classes.json (background words kept as typed)."""
    return LabelRecord.from_dict({
        "record_version": 2, "segmenter": "maskclip", "clip": None, "classes": classes, "synonyms": synonyms,
        "inference": {"templates": "simple", "background": background, "method": "naclip", "pamr": True},
        "network": None, "min_confidence": 0.3, "confidence_format": "npy", "exif": True,
    })


@pytest.mark.parametrize("background, classes, synonyms", [
    ([], ["cat", "dog"], {}),
    (["sky", " wall", ""], [BACKGROUND, "person", "dog"], {"person": ["person", "person in shirt", "man"]}),
])
def test_a_record_round_trips_through_the_vocabulary(background, classes, synonyms):
    """classes.json -> vocabulary -> the same record (classes, synonyms, and so the resume hash)."""
    record = _record(background, classes, synonyms)
    vocab = ClassVocabulary.from_record(record)
    assert vocab.names == classes and vocab.synonyms == synonyms
    rebuilt = replace(record, classes=vocab.names, synonyms=vocab.synonyms)
    assert rebuilt.to_dict() == record.to_dict() and record_hash(rebuilt) == record_hash(record)
    # the same classes given as user input give the same vocabulary
    fg = [synonyms.get(n, n) for n in classes[1 if background and any(w.strip() for w in background) else 0:]]
    assert ClassVocabulary.build(fg, background) == vocab
    assert ClassVocabulary.from_names(tuple(classes), background, synonyms) == vocab


def test_inconsistent_records_are_refused():
    with pytest.raises(MaskCLIPError, match="class 0 is not 'background'"):
        ClassVocabulary.from_record(_record(["sky"], ["cat", "dog"], {}))
    with pytest.raises(MaskCLIPError, match="do not start with the class name"):
        ClassVocabulary.from_record(_record([], ["cat", "dog"], {"cat": ["kitty", "cat"]}))
    with pytest.raises(MaskCLIPError, match="Duplicate"):
        ClassVocabulary.from_record(_record([], ["cat", "Cat"], {}))


def test_subset_keeps_the_chosen_classes_and_maps_their_ids_back():
    vocab = ClassVocabulary.build(["cat", ["dog", "puppy"], "cow"], ["sky", "wall"])
    unseen = vocab.subset(["cow", "dog"])
    assert unseen.names == ["cow", "dog"] and unseen.background == ()
    assert unseen.prompts == ["cow", "dog", "puppy"] and vocab.ids(unseen.names) == [3, 2]
    with_bg = vocab.subset(["dog", BACKGROUND])
    assert with_bg.names == [BACKGROUND, "dog"] and with_bg.background == ("sky", "wall")
    assert vocab.ids(with_bg.names) == [0, 2]
    with pytest.raises(MaskCLIPError, match="Unseen: horse"):
        vocab.subset(["horse", "cat"], "Unseen")
    with pytest.raises(MaskCLIPError, match="besides the merged background"):
        vocab.subset([BACKGROUND])


@pytest.mark.parametrize("classes, background", [(["a\nb", "c"], ()), (["cat", ["dog", "pup\tpy"]], ()), (["cat"], ["sky\x00"])])
def test_control_characters_in_class_names(classes, background):
    """`label --classes $'a\\nb'` made a class whose name broke cvat's labelmap (refused only at export)
    and the one-name-per-line files; refused when the vocabulary is built from user input."""
    with pytest.raises(MaskCLIPError, match="control characters"):
        ClassVocabulary.build(classes, background)


def test_background_word_that_is_also_a_class():
    """`--classes a,b --background a`: "a" scored for class 0 and for class 1 at once."""
    with pytest.raises(MaskCLIPError, match="Sky: both a class and a --background word"):
        ClassVocabulary.build(["Sky", "cat"], ["sky", "wall"])
    with pytest.raises(MaskCLIPError, match="kitty: both"):
        ClassVocabulary.build([["cat", "kitty"]], ["kitty"])
    assert ClassVocabulary.build(["cat"], ["sky"]).names == ["background", "cat"]
