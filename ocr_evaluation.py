"""Checking a model and a dataset: score a model on a labelled folder, and audit a folder's labels.

    python ocr_captcha.py --evaluate DIR --model PATH [--report FILE]
    python ocr_captcha.py --audit DIR [--folds 5] [--report FILE]

The audit trains k models, each on the files outside one fold, and scores every file
with the model that did not see it: a file whose given label gets a low probability is
most likely mislabelled. Files are ranked by that probability, lowest first.
"""

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import ocr_captcha
import ocr_core
import ocr_storage
from ocr_core import DatasetError


def evaluate_folder(reader: "ocr_captcha.Reader", folder: str, report_path: Path) -> dict:
    """Read every labelled image in `folder`, print the scores and every misread, write a JSON report."""
    items = ocr_core.list_labelled_images(folder)
    if not items:
        raise DatasetError(f"{folder}: no images ({', '.join(ocr_core.IMAGE_EXTENSIONS)})")
    data = ocr_captcha.load_images(items, reader.spec)
    readings = reader.read_arrays(data.images)
    charset = reader.spec.charset
    misreads = []
    for path, truth, reading in zip(data.paths, data.labels, readings):
        if reading.text != truth:
            misread = {"path": str(path), "truth": truth, "pred": reading.text, "confidence": reading.confidence}
            outside = ocr_core.chars_outside(truth, charset)
            if outside:
                misread["outside_charset"] = outside
            misreads.append(misread)
    seq_acc, cer = ocr_core.score(data.labels, [r.text for r in readings])
    outside_all = "".join(sorted(ocr_core.chars_outside("".join(data.labels), charset)))
    report = {"n": len(data.labels), "seq_acc": seq_acc, "cer": cer, "misreads": misreads,
              "chars_outside_charset": outside_all, "unreadable": data.bad_files}
    for misread in misreads:
        note = f"  (not in the model's charset: {misread['outside_charset']!r})" if "outside_charset" in misread else ""
        print(f"misread {misread['path']}: truth {misread['truth']!r}, read {misread['pred']!r}, "
              f"confidence {misread['confidence']:.3f}{note}")
    print(f"{folder}: sequence accuracy {seq_acc:.4f}, character error rate {cer:.4f} "
          f"({len(misreads)} misreads in {len(data.labels)} images)")
    if outside_all:
        print(f"labels use characters the model cannot read: {outside_all!r}")
    if data.bad_files:
        print(f"{len(data.bad_files)} unreadable files were skipped (listed in the report)")
    ocr_storage.write_json(report_path, report)
    print(f"report: {report_path}")
    return report


def label_probabilities(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """P(label | image) under the CTC model, for each image and its given (encoded) label."""
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    label_lengths = (labels != ocr_core.BLANK_INDEX).sum(axis=1)
    logit_lengths = np.full(len(labels), logits.shape[1])
    nll = keras.ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=ocr_core.BLANK_INDEX)
    return np.exp(-keras.ops.convert_to_numpy(nll).astype(np.float64))


def audit_folder(args: argparse.Namespace) -> int:
    """Rank every file of a folder by the out-of-fold probability of its label; write JSON and a contact sheet."""
    keras.utils.set_random_seed(args.seed)
    model_path = Path(args.model)
    ocr_storage.check_writable(model_path.parent)
    _, spec, data = ocr_captcha.load_labelled_folder(args.audit, model_path, None, args)
    count = len(data.labels)
    if count < 2 * args.folds:
        raise DatasetError(f"{args.audit}: {count} readable images are too few for {args.folds} folds")
    labels = ocr_captcha.encode_labels(data.labels, spec)
    folds = np.array_split(np.random.default_rng(args.seed).permutation(count), args.folds)
    p_label = np.zeros(count)
    predictions = [""] * count
    for k, held_out in enumerate(folds, start=1):
        print(f"fold {k}/{args.folds}: training on {count - len(held_out)} images, scoring {len(held_out)}")
        train_idx = np.setdiff1d(np.arange(count), held_out)
        model = ocr_captcha.build_model(spec)
        work = Path(tempfile.mkdtemp(prefix="ocr_audit_"))
        try:
            elements = tf.data.Dataset.from_tensor_slices((data.images[train_idx], labels[train_idx])).cache()
            ocr_captcha.fit(model, elements, len(train_idx), data.images[:0], labels[:0], args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        p_label[held_out] = label_probabilities(model, data.images[held_out], labels[held_out])
        readings = ocr_captcha.Reader(model).read_arrays(data.images[held_out])
        for index, reading in zip(held_out, readings):
            predictions[index] = reading.text
    ranking = [
        {"path": str(data.paths[i]), "label": data.labels[i], "pred": predictions[i], "p_label": float(p_label[i])}
        for i in np.argsort(p_label, kind="stable")
    ]
    report_path = Path(args.report) if args.report else model_path.with_name("audit.json")
    ocr_storage.write_json(report_path, ranking)
    import ocr_plots  # matplotlib is only needed for the contact sheet

    sheet = report_path.with_suffix(".png")
    ocr_plots.save_contact_sheet(ranking, sheet)
    disagree = sum(row["label"] != row["pred"] for row in ranking)
    top = max(1, math.ceil(0.02 * count))
    print(f"audit of {count} files: {disagree} readings disagree with their label; "
          f"the {top} least likely labels (2%) head {report_path}; contact sheet {sheet}")
    return 0
