"""Labels and the charset: file names or a labels.csv give the labels; the charset maps them to classes."""

import csv
import io
import re
from pathlib import Path
from typing import Iterable, NamedTuple, Union

from captcha_reader.base import (
    BLANK_INDEX,
    WIDTH_PER_TIME_STEP,
    DatasetError,
    ModelSpec,
    printable,
)
from captcha_reader.images import IMAGE_EXTENSIONS

LABELS_CSV = "labels.csv"
# What browsers and file managers add to a copy's name: a space (`0427 copy.png`, `0427 (1).png`) or `(1)`.
COPY_LABEL = re.compile(r" |\(\d+\)$")
CSV_HEADER = ("path", "label", "note")


# ---------------------------------------------------------------------------
# Labels: from file names, or from a labels.csv that overrides them
# ---------------------------------------------------------------------------


def label_from_filename(path: Union[str, Path]) -> str:
    """The label of a file: its stem, or the part of it before the first `_`."""
    return Path(path).stem.split("_", 1)[0]


def check_utf8_name(path: Path) -> Path:
    """The path, if its file name is text: a name with bytes that are not UTF-8 spells no label."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(f"{printable(str(path))}: the file name is not valid UTF-8; rename the file") from None
    return path


def is_image_file(path: Path) -> bool:
    """True for a regular file with an accepted image extension (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def list_images(folder: Union[str, Path]) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def images_in(folder: Union[str, Path], purpose: str = "") -> list[Path]:
    """`list_images`, or a DatasetError naming the accepted extensions when the folder has none (`purpose`: to what end)."""
    images = list_images(folder)
    if not images:
        raise DatasetError(f"{printable(str(folder))}: no images{purpose} ({', '.join(IMAGE_EXTENSIONS)})")
    return images


class LabelRow(NamedTuple):
    """One file's entry in labels.csv: its label ("" = left out of training) and why (`note`)."""

    label: str
    note: str = ""


def read_label_rows(csv_path: Path) -> dict[str, LabelRow]:
    """Map file name to its last row in a `path,label[,note]` CSV file in UTF-8 (a BOM and a header are optional).

    The file may be an append-only log: a later row for a file replaces an earlier one.
    An empty label leaves the file out of training (not labelled yet, or `unreadable`).
    """
    data = csv_path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(f"{csv_path}: line {line} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    labels = {}
    rows = csv.reader(io.StringIO(text, newline=""))
    next_line = 1
    try:
        for row in rows:
            first_line, next_line = next_line, rows.line_num + 1  # a quoted field may span lines
            if not row or (first_line == 1 and row in (list(CSV_HEADER[:2]), list(CSV_HEADER))):
                continue
            if len(row) not in (2, 3) or not row[0]:
                raise DatasetError(f"{csv_path}: line {first_line}: expected `path,label` or `path,label,note`, "
                                   f"got {row!r}"[:300])
            if first_line == 1 and row[0].strip().lower() == CSV_HEADER[0]:
                raise DatasetError(f"{csv_path}: line 1: the header must be `path,label` or `path,label,note`,"
                                   f" got {','.join(row)!r}"[:300])
            if any("\n" in field or "\r" in field for field in row[1:]):
                raise DatasetError(f"{csv_path}: line {first_line}: a label or note runs over several lines"
                                   " (a quote left open?)")
            labels[Path(row[0]).name] = LabelRow(row[1].strip(), *row[2:])
    except csv.Error as error:
        raise DatasetError(f"{csv_path}: line {rows.line_num}: {error}") from None
    return labels


def read_labels_csv(csv_path: Path) -> dict[str, str]:
    """Map file name to label from a labels.csv; "" for a file left out of training."""
    return {name: row.label for name, row in read_label_rows(csv_path).items()}


def list_labelled_images(folder: Union[str, Path]) -> list[tuple[Path, str]]:
    """(path, label) for every image in `folder` that has a label.

    `labels.csv` there overrides file names; a file it lists with an empty label is left out.
    """
    paths = [check_utf8_name(path) for path in list_images(folder)]
    csv_path = Path(folder) / LABELS_CSV
    if not csv_path.is_file():
        check_not_copy_names(paths)
        return [(p, label_from_filename(p)) for p in paths]
    overrides = read_labels_csv(csv_path)
    check_not_copy_names([p for p in paths if p.name not in overrides])
    labelled = ((p, overrides.get(p.name, label_from_filename(p))) for p in paths)
    return [(p, label) for p, label in labelled if label]


def check_not_copy_names(paths: list[Path]) -> None:
    """Refuse files whose name gives a copy's label (`0427 (1).png` names a copy, not the text `0427 (1)`)."""
    copies = [path for path in paths if COPY_LABEL.search(label_from_filename(path))]
    if copies:
        others = f" (and {len(copies) - 1} more)" if len(copies) > 1 else ""
        raise DatasetError(f"{printable(str(copies[0]))}{others}: the file name gives the label"
                           f" {printable(label_from_filename(copies[0]))!r}, a copy's name (`0427 (1).png`, `0427"
                           " copy.png`); name each file by its text alone (`0427_1.png` for a second image of 0427),"
                           f" or give its label in {LABELS_CSV}")


def answered_names(folder: Union[str, Path]) -> set[str]:
    """Names that the folder's labels.csv gives a label or a note (such as `unreadable`): not waiting for a label."""
    csv_path = Path(folder) / LABELS_CSV
    if not csv_path.is_file():
        return set()
    return {name for name, row in read_label_rows(csv_path).items() if row.label or row.note}


# ---------------------------------------------------------------------------
# Charset: characters <-> class indices (0 is the CTC blank)
# ---------------------------------------------------------------------------


def charset_from_labels(labels: list[str]) -> str:
    """The sorted set of characters used by `labels`."""
    return "".join(sorted(set("".join(labels))))


def encode_label(label: str, charset: str) -> list[int]:
    """Class indices of `label`'s characters (1-based: 0 is the blank)."""
    return [charset.index(c) + 1 for c in label]


def decode_indices(indices: Iterable[int], charset: str) -> str:
    """Text for a sequence of class indices, skipping the blank."""
    return "".join(charset[i - 1] for i in indices if i != BLANK_INDEX)


def chars_outside(label: str, charset: str) -> str:
    """The characters of `label` that `charset` lacks, each once, in order."""
    return "".join(dict.fromkeys(c for c in label if c not in charset))


def min_time_steps(label: str) -> int:
    """Fewest CTC time steps that can emit `label`: a blank must separate repeated characters."""
    repeats = sum(a == b for a, b in zip(label, label[1:]))
    return len(label) + repeats


def check_time_steps(labels: list[str], spec: ModelSpec) -> None:
    """Fail early when a label needs more CTC time steps than the geometry gives."""
    longest = max(labels, key=min_time_steps)
    needed = min_time_steps(longest)
    if needed > spec.time_steps:
        raise DatasetError(
            f"label {longest!r} needs {needed} CTC time steps but a {spec.width}-pixel-wide input gives"
            f" {spec.time_steps}; use --img-width {needed * WIDTH_PER_TIME_STEP} or more"
        )
