"""Finding mislabelled files: train k models, each on the files outside one fold, and score every
file with the model that did not see it.

    python ocr_captcha.py --audit DIR [--folds 5] [--report FILE]

A file whose given label gets a low probability is most likely mislabelled. Files are
ranked by that probability, lowest first.
"""

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from captcha_reader.base import BLANK_INDEX, DatasetError
from captcha_reader.data import encode_labels, infer_spec, labelled_items, load_training_images
from captcha_reader.files import check_writable, write_json
from captcha_reader.model import KerasReader
from captcha_reader.settings import TrainingSettings
from captcha_reader.tf_import import keras
from captcha_reader.training import fit, in_memory, network_for, starting_point


def label_probabilities(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """P(label | image) under the CTC model, for each image and its given (encoded) label."""
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    label_lengths = (labels != BLANK_INDEX).sum(axis=1)
    logit_lengths = np.full(len(labels), logits.shape[1])
    nll = keras.ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=BLANK_INDEX)
    return np.exp(-keras.ops.convert_to_numpy(nll).astype(np.float64))


def audit_folder(folder: str, settings: TrainingSettings, folds: int, report_path: Path) -> list[dict]:
    """Rank every file of a folder by the out-of-fold probability of its label; write JSON and a contact sheet."""
    if folds < 2:
        raise DatasetError(f"the audit needs at least 2 folds (each model must leave some files out), got {folds}")
    keras.utils.set_random_seed(settings.seed)
    check_writable(report_path.parent, "the report")
    items = labelled_items(folder)
    # Each fold starts where a training run on this folder would: the base model for letters it knows.
    _, base, spec = starting_point(settings, infer_spec(items, settings.img_height, settings.img_width))
    data = load_training_images(items, spec, folder)
    count = len(data.labels)
    if count < 2 * folds:
        raise DatasetError(f"{folder}: {count} readable images are too few for {folds} folds")
    labels = encode_labels(data.labels, spec)
    fold_indices = np.array_split(np.random.default_rng(settings.seed).permutation(count), folds)
    p_label = np.zeros(count)
    predictions = [""] * count
    for k, held_out in enumerate(fold_indices, start=1):
        print(f"fold {k}/{folds}: training on {count - len(held_out)} images, scoring {len(held_out)}")
        train_idx = np.setdiff1d(np.arange(count), held_out)
        model = network_for(spec, base)
        work = Path(tempfile.mkdtemp(prefix="audit_"))
        try:
            elements = in_memory(data.images[train_idx], labels[train_idx])
            fit(model, elements, len(train_idx), data.images[:0], labels[:0], settings, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        p_label[held_out] = label_probabilities(model, data.images[held_out], labels[held_out])
        if not np.isfinite(p_label[held_out]).all():
            raise DatasetError(f"fold {k}: training became NaN or infinite, so its files cannot be ranked; no report"
                               " was written; try a lower --learning-rate")
        readings = KerasReader(model).read_arrays(data.images[held_out])
        for index, reading in zip(held_out, readings):
            predictions[index] = reading.text
    ranking = [
        {"path": str(data.paths[i]), "label": data.labels[i], "pred": predictions[i], "p_label": float(p_label[i])}
        for i in np.argsort(p_label, kind="stable")
    ]
    write_json(report_path, ranking)
    from captcha_reader import plots  # matplotlib is only needed for the contact sheet

    sheet = report_path.with_suffix(".png")
    plots.save_contact_sheet(ranking, sheet)
    disagree = sum(row["label"] != row["pred"] for row in ranking)
    top = max(1, math.ceil(0.02 * count))
    print(f"audit of {count} files: {disagree} readings disagree with their label; "
          f"the {top} least likely labels (2%) head {report_path}; contact sheet {sheet}")
    return ranking
