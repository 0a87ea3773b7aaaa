"""Training with unlabelled images: one round of pseudo-labels (`ocr_captcha.py --unlabelled DIR`).

    train_with_unlabelled(TrainingSettings(data_dir="labelled"), "unlabelled")

A first run trains on the labels alone; its model reads the unlabelled images; a second run, from
the same start, trains on the labels plus every reading the first model is sure of. Validation stays
on the labelled images in both runs. From 300 labels of `hard2` and 10,000 unlabelled images, this
read 95.3% of 1,000 fresh images instead of 90.7%; from 2,000 labels it gained nothing beyond one
run's noise. A second round gained no more than that noise from either (benchmarks/levers.md,
"Unlabelled images" and "A second round of pseudo-labels").
"""

import hashlib
import random
from dataclasses import replace
from pathlib import Path

from captcha_reader import distributed, records
from captcha_reader.base import DatasetError, ImageReadError, counted
from captcha_reader.data import check_bad_files, labelled_items
from captcha_reader.decoding import Reading
from captcha_reader.files import check_output_folder, has_backup, labels_only_model, same_path
from captcha_reader.images import image_size
from captcha_reader.labels import LABELS_CSV, answered_names, images_in
from captcha_reader.model import KerasReader, load_keras_reader
from captcha_reader.settings import MAX_PSEUDO_LABELLED, PSEUDO_LABEL_CONFIDENCE, TrainingSettings
from captcha_reader.training import PseudoLabels, check_run_paths, locked_run, train_and_save, trained_on


def train_with_unlabelled(settings: TrainingSettings, unlabelled_dir: str) -> KerasReader:
    """Train on the labels, read `unlabelled_dir`, then train again with the readings the model is sure of.

    The first run's model stays in `labels_only_model`, and an interrupted second run resumes from it.
    The unlabelled folder may be the labelled one: the images its labels.csv lists as waiting for a
    label are then the ones read.
    """
    check_run_paths(settings)
    check_unlabelled(settings, unlabelled_dir)
    strategy = distributed.make_strategy(settings.strategy)  # before any other TensorFlow work
    model_path, first_path = Path(settings.model), labels_only_model(Path(settings.model))
    with locked_run(model_path):
        items = labelled_items(settings.data_dir)  # listed once: both runs validate on the same images
        pool = unlabelled_images(unlabelled_dir, items)
        interrupted = has_backup(model_path) and not settings.restart
        if interrupted and trained_on(first_path, items):
            print(f"the second run was interrupted: it resumes, reading with the first run's model {first_path}")
            first_reader = load_keras_reader(first_path)
        else:
            if interrupted and first_path.is_file():
                print(f"the first run's model {first_path} has no record of being trained on these labels (they"
                      " changed, or its split record is missing): both runs start again")
            print(f"first run, on the labels alone: its model goes to {first_path}")
            with locked_run(first_path):
                first = replace(settings, model=str(first_path), test_dir=None)
                first_reader = train_and_save(first, strategy, chief=True, items=items)
        sure = at_most_max(sure_readings(first_reader, pool), settings.seed)
        if not sure:
            raise DatasetError(f"no unlabelled image was read with confidence at least {PSEUDO_LABEL_CONFIDENCE},"
                               f" so there is no second run; the model trained on the labels is {first_path}")
        print(f"second run, on the labels and {len(sure)} sure readings: its model goes to {model_path}")
        reader = train_and_save(settings, strategy, chief=True, items=items,
                                pseudo_labels=PseudoLabels(unlabelled_dir, PSEUDO_LABEL_CONFIDENCE, sure))
    print(f"validation: {validation_percent(first_reader)} labels only ({first_path}), "
          f"{validation_percent(reader)} with the sure readings ({model_path})")
    return reader


def check_unlabelled(settings: TrainingSettings, unlabelled_dir: str) -> None:
    """Before any work: a folder of labelled images on one machine, and readable unlabelled images not the test's.

    training.check_run_paths checks the rest: the model's folder against --data-dir and --test-dir.
    """
    if not unlabelled_dir:
        raise DatasetError("the unlabelled folder is an empty path; name a folder of images")
    if settings.strategy == "multiworker" or records.is_record_folder(settings.data_dir):
        raise DatasetError("--unlabelled works with a folder of labelled images on one machine, not with"
                           " TFRecord shards or --strategy multiworker")
    if settings.test_dir and same_path(unlabelled_dir, settings.test_dir):
        raise DatasetError(f"--unlabelled {unlabelled_dir} is also the --test-dir folder; give a folder of"
                           " other images of the same captchas")
    check_output_folder(Path(settings.model).parent, "the plots beside the model", {"--unlabelled": unlabelled_dir})
    inputs = {"--data-dir": settings.data_dir, "--test-dir": settings.test_dir, "--unlabelled": unlabelled_dir}
    check_output_folder(labels_only_model(Path(settings.model)).parent, "the first run's model and plots", inputs)
    paths = images_in(unlabelled_dir, " for --unlabelled")
    check_bad_files([error for error in map(header_error, paths) if error], len(paths), unlabelled_dir)


def header_error(path: Path) -> str | None:
    """Why an image file's header cannot be read, or None when it can."""
    try:
        image_size(path)
    except ImageReadError as error:
        return str(error)
    return None


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unlabelled_images(folder: str, items: list[tuple[Path, str]]) -> list[Path]:
    """The images of `folder` to read: none its labels.csv labels or marks, none a byte copy of a labelled image.

    Copies would leak validation labels. Named as --unlabelled, the --data-dir folder itself gives the images
    its labels.csv lists as waiting for a label.
    """
    labelled = {file_digest(path) for path, _ in items}
    images = images_in(folder)
    answered = answered_names(folder)
    paths = [path for path in images if path.name not in answered]
    fresh = [path for path in paths if file_digest(path) not in labelled]
    if len(paths) < len(images):
        print(f"left out: {counted(len(images) - len(paths), 'image')} that {Path(folder) / LABELS_CSV} labels or"
              " marks unreadable")
    if len(fresh) < len(paths):
        print(f"left out: {counted(len(paths) - len(fresh), 'image')} of {folder} labelled by file name, or copies of"
              " labelled images")
    if not fresh:
        raise DatasetError(f"--unlabelled {folder}: every image there is labelled, a copy of a labelled image or marked"
                           " in labels.csv, so there is nothing to read; give a folder of other images of the same"
                           " captchas")
    return fresh


def sure_readings(reader: KerasReader, paths: list[Path]) -> list[tuple[Path, str]]:
    """The images the reader reads with at least PSEUDO_LABEL_CONFIDENCE, with those readings."""
    chunk = 4096  # images decoded at a time while reading
    readings = [reading for start in range(0, len(paths), chunk)
                for reading in reader.read_each(paths[start:start + chunk])]
    sure = [(path, reading.text) for path, reading in zip(paths, readings)
            if isinstance(reading, Reading) and reading.confidence >= PSEUDO_LABEL_CONFIDENCE]
    print(f"read {len(paths)} unlabelled images: {len(sure)} read with confidence at least {PSEUDO_LABEL_CONFIDENCE}")
    return sure


def at_most_max(sure: list[tuple[Path, str]], seed: int) -> list[tuple[Path, str]]:
    """The sure readings, or a sample of MAX_PSEUDO_LABELLED of them (seeded, in file order) when there are more."""
    if len(sure) <= MAX_PSEUDO_LABELLED:
        return sure
    print(f"{len(sure)} sure readings are more than a second run takes: a sample of {MAX_PSEUDO_LABELLED} (seed {seed})"
          " joins")
    return [sure[i] for i in sorted(random.Random(seed).sample(range(len(sure)), MAX_PSEUDO_LABELLED))]


def validation_percent(reader: KerasReader) -> str:
    """A model's validation sequence accuracy as a percentage, or "no score"."""
    seq_acc = reader.validation.get("seq_acc")
    return "no score" if seq_acc is None else f"{seq_acc:.2%}"
