"""A labelled folder as arrays: charset and geometry inferred, images decoded once, a seeded split.

TensorFlow-free: training feeds these arrays to tf.data, evaluation reads them directly.
"""

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from captcha_reader.base import DatasetError, ImageReadError, ModelSpec, counted, printable, width_for
from captcha_reader.images import IMAGE_EXTENSIONS, geometry_for, image_size, read_image, stack_images
from captcha_reader.labels import (
    LABELS_CSV,
    charset_from_labels,
    check_time_steps,
    encode_label,
    list_images,
    list_labelled_images,
    read_labels_csv,
)
from captcha_reader.settings import DEFAULT_CAPACITY, MAX_IMG_WIDTH

# A folder with more unreadable files than this is more likely the wrong folder than a few bad downloads.
MAX_BAD_FRACTION = 0.10
# One label on more than this share of a folder's images, on at least SHARED_LABEL_MIN of them and on
# SHARED_LABEL_LEAD times as many as the next label is a common file-name prefix such as `img` of
# img_0001.png, not the text of captchas (whose labels spread out, even over a small charset).
SHARED_LABEL_SHARE = 0.25
SHARED_LABEL_MIN = 20
SHARED_LABEL_LEAD = 5


class LabelledImages(NamedTuple):
    """Decoded images with their labels and source files."""

    images: np.ndarray  # float32 (n, height, width) in [0, 1]
    labels: list[str]
    paths: list[Path]
    bad_files: list[str]  # "path: problem" for each file that could not be read


def labelled_items(folder: str | Path, warn_of_absent: bool = True) -> list[tuple[Path, str]]:
    """(path, label) for a folder's images, or a DatasetError when it has none; warns of labels for absent files."""
    items = list_labelled_images(folder)
    if not items and list_images(folder):
        raise DatasetError(f"{printable(str(folder))}: no labelled images (its {LABELS_CSV} lists every image as"
                           f" waiting or unreadable); label them with `python ocr_captcha.py --label"
                           f" {printable(str(folder))}`, or, if the file names are the labels, delete {LABELS_CSV}"
                           " (and its unreadable marks)")
    if not items:
        raise DatasetError(f"{printable(str(folder))}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    unnamed = [path for path, label in items if not label]
    if unnamed:
        others = f" (and {len(unnamed) - 1} more)" if len(unnamed) > 1 else ""
        raise DatasetError(f"{printable(str(unnamed[0]))}{others}: the file name gives an empty label (the label is"
                           " the name before any '_'); rename it, or label it in labels.csv")
    check_labels_vary(items, folder)
    if warn_of_absent:
        warn_of_absent_files(folder)
    return items


def warn_of_absent_files(folder: str | Path) -> None:
    """Warn when labels.csv labels files the folder does not hold: a mistyped name would lose its label unseen."""
    csv_path = Path(folder) / LABELS_CSV
    if not csv_path.is_file():
        return
    present = {path.name for path in list_images(folder)}
    absent = sorted(name for name, label in read_labels_csv(csv_path).items() if label and name not in present)
    if absent:
        print(f"warning: {printable(str(csv_path))} labels {counted(len(absent), 'file')} that"
              f" the folder does not hold (such as {printable(absent[0])}); those labels are not used", file=sys.stderr)


def check_labels_vary(items: list[tuple[Path, str]], folder: str | Path) -> None:
    """Refuse a folder where one label far outnumbers the others: its images' names are not labels yet."""
    (label, shared), *rest = Counter(label for _, label in items).most_common(2)
    runner_up = rest[0][1] if rest else 0
    if shared >= SHARED_LABEL_MIN and shared > max(SHARED_LABEL_SHARE * len(items), SHARED_LABEL_LEAD * runner_up):
        example = next(path for path, item_label in items if item_label == label)
        raise DatasetError(f"{printable(str(folder))}: {shared} of {len(items)} images have the label {label!r}"
                           f" (such as {printable(example.name)}), which is a name, not the text they show; label"
                           f" them with `python ocr_captcha.py --label {printable(str(folder))}`, or name each file"
                           " by its text")


def infer_spec(items: list[tuple[Path, str]], height: int, width: int | None) -> ModelSpec:
    """Charset, label lengths and geometry for a labelled folder (width from the median aspect ratio)."""
    labels = [label for _, label in items]
    if width is None:
        sizes = []
        for path, _ in items:
            try:
                sizes.append(image_size(path))
            except ImageReadError:
                continue  # reported once, when the images are decoded
        height, width = geometry_for(sizes or [(height, height)], height)
    return ModelSpec(
        charset=charset_from_labels(labels),
        height=height,
        width=width,
        max_label_length=max(len(label) for label in labels),
        min_label_length=min(len(label) for label in labels),
    )


def spec_for_data(found: ModelSpec, base: ModelSpec | None, capacity: int | None = None) -> ModelSpec:
    """The spec to train: the data's own; fine-tuning keeps the base model's input height and capacity.

    A fine-tuned model reads the characters and label lengths of its new data (they are what it
    will be asked to read) at the data's own aspect ratio; its height and filters are fixed by its weights.
    """
    if base is None:
        return checked_width(replace(found, capacity=capacity or DEFAULT_CAPACITY))
    if capacity not in (None, base.capacity):
        raise DatasetError(f"capacity {capacity}: the model to fine-tune has capacity {base.capacity}, which its"
                           " weights fix")
    return checked_width(ModelSpec(found.charset, base.height, width_for(base.height, found.width / found.height),
                                   found.max_label_length, found.min_label_length, base.capacity))


def checked_width(spec: ModelSpec) -> ModelSpec:
    """The spec, if its input is at most MAX_IMG_WIDTH wide: a run holds every image decoded at that size."""
    if spec.width > MAX_IMG_WIDTH:
        raise DatasetError(f"the images are {spec.width / spec.height:.0f} times as wide as tall: at height"
                           f" {spec.height} the input would be {spec.width} wide (at most {MAX_IMG_WIDTH});"
                           " crop them, or pass --img-width")
    return spec


def load_images(items: list[tuple[Path, str]], spec: ModelSpec) -> LabelledImages:
    """Decode every image with the shared reader, skipping (and listing) unreadable files."""

    def read(item: tuple[Path, str]) -> np.ndarray | ImageReadError:
        """One image's pixels, or the error that names why it cannot be read."""
        try:
            return read_image(item[0], spec.height, spec.width)
        except ImageReadError as error:
            return error

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(read, items))
    good = [(array, item) for array, item in zip(results, items) if isinstance(array, np.ndarray)]
    bad = [str(error) for error in results if isinstance(error, ImageReadError)]
    images = stack_images([array for array, _ in good], spec.height, spec.width)
    return LabelledImages(images, [label for _, (_, label) in good], [path for _, (path, _) in good], bad)


def check_some_readable(bad_files: list[str], total: int, folder: str | Path) -> None:
    """Stop when not one of the folder's files could be read."""
    if bad_files and len(bad_files) == total:
        raise DatasetError(f"{printable(str(folder))}: no readable images among {total} files (first: {bad_files[0]})")


def check_bad_files(bad_files: list[str], total: int, folder: str | Path) -> None:
    """Stop when no file, or more than MAX_BAD_FRACTION of them, could be read."""
    check_some_readable(bad_files, total, folder)
    if len(bad_files) > MAX_BAD_FRACTION * total:
        raise DatasetError(f"{printable(str(folder))}: {len(bad_files)} of {total} files are unreadable "
                           f"(first: {bad_files[0]}); is this the right folder?")


def load_training_images(items: list[tuple[Path, str]], spec: ModelSpec, folder: str | Path) -> LabelledImages:
    """A folder's labelled images decoded for `spec`, once its labels fit the time steps and enough files read."""
    check_time_steps([label for _, label in items], spec)
    data = load_images(items, spec)
    check_bad_files(data.bad_files, len(items), folder)
    return data


def list_bad_files(bad_files: list[str], listing: Path) -> None:
    """Warn about unreadable files in one line and list them all in `listing` (a listing of an earlier run goes)."""
    if not bad_files:
        listing.unlink(missing_ok=True)
        return
    listing.write_text("\n".join(bad_files) + "\n")
    first = "; ".join(bad_files[:3])
    print(f"warning: skipped {len(bad_files)} unreadable files ({first}); full list in {listing}", file=sys.stderr)


def split_indices(count: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, deterministic (train, validation) split of range(count)."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = min(count - 1, max(1, round(count * val_split))) if val_split > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def encode_labels(labels: list[str], spec: ModelSpec) -> np.ndarray:
    """Labels as an int32 (n, max_label_length) array of class indices, padded with the blank (0)."""
    encoded = np.zeros((len(labels), spec.max_label_length), dtype=np.int32)
    for row, label in enumerate(labels):
        indices = encode_label(label, spec.charset)
        encoded[row, : len(indices)] = indices
    return encoded
