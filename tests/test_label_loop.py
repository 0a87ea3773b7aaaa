"""captcha_reader.label_loop: the answers log, the queue order, review reports, training progress."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from captcha_reader.base import DatasetError, ModelSpec
from captcha_reader.decoding import Reading, TextFormat
from captcha_reader.label_loop import (
    FORMAT_MIN_LABELS,
    WORK_DIR,
    BadAnswer,
    LabelStore,
    TrainingProgress,
    describe_format,
    fine_tune_epochs,
    labels_format,
    open_reviews,
    order_queue,
    suggest,
    training_command,
    update_progress,
)
from captcha_reader.labels import LabelRow, list_labelled_images, read_label_rows
from captcha_reader.settings import MAX_AUTO_EPOCHS


def image_folder(tmp_path, names):
    """A folder of empty files with image names."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_opening_marks_every_unlisted_image_waiting_once(tmp_path):
    folder = image_folder(tmp_path, ["IMG_1.png", "IMG_2.png", "1234.png"])
    store = LabelStore(folder)
    assert store.open_for_labelling() == 3
    assert LabelStore(folder).open_for_labelling() == 0
    assert (folder / "labels.csv").read_text().splitlines() == [
        "path,label,note", "1234.png,,", "IMG_1.png,,", "IMG_2.png,,"]
    assert list_labelled_images(folder) == []  # never trained under their file names


def test_answers_undo_and_unreadable_survive_a_reopen(tmp_path):
    folder = image_folder(tmp_path, ["a.png", "b.png", "c.png"])
    store = LabelStore(folder)
    store.open_for_labelling()
    store.answer("a.png", " x,1 ")
    store.answer("b.png", "wrong")
    store.answer("b.png", "")  # undo
    store.answer("c.png", "ignored", "unreadable")
    again = LabelStore(folder)
    assert again.rows == {"a.png": LabelRow("x,1"), "b.png": LabelRow(""), "c.png": LabelRow("", "unreadable")}
    assert again.waiting() == ["b.png"]
    assert again.counts() == {"total": 3, "labelled": 1, "unreadable": 1, "waiting": 1}
    assert [(p.name, label) for p, label in list_labelled_images(folder)] == [("a.png", "x,1")]


@pytest.mark.parametrize("name, label, note", [
    ("nope.png", "1", ""), ("../a.png", "1", ""), ("a.png", "1\n2", ""), ("a.png", "1", "maybe"), ("a.png", "x" * 65, ""),
    ("a.png", " ", "reviewed"),
])
def test_bad_answers_are_refused_and_not_written(tmp_path, name, label, note):
    folder = image_folder(tmp_path, ["a.png"])
    store = LabelStore(folder)
    store.open_for_labelling()
    before = (folder / "labels.csv").read_text()
    with pytest.raises(BadAnswer):
        store.answer(name, label, note)
    assert (folder / "labels.csv").read_text() == before


def test_two_stores_on_one_folder_write_whole_rows(tmp_path):
    names = [f"{i:03d}.png" for i in range(100)]
    folder = image_folder(tmp_path, names)
    LabelStore(folder).open_for_labelling()
    tabs = [LabelStore(folder), LabelStore(folder)]
    threads = [threading.Thread(target=lambda s=store, k=k: [s.answer(n, f"{k}{n[:3]}") for n in names])
               for k, store in enumerate(tabs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = read_label_rows(folder / "labels.csv")
    assert sorted(rows) == names
    assert all(row.label[1:] == name[:3] for name, row in rows.items())
    assert len((folder / "labels.csv").read_text().splitlines()) == 1 + 100 + 200


def test_images_added_after_opening_wait_for_a_label(tmp_path):
    folder = image_folder(tmp_path, ["a.png"])
    store = LabelStore(folder)
    store.open_for_labelling()
    (folder / "0427.png").write_bytes(b"")  # saved into the folder while the page runs
    assert store.take_new_images() == ["0427.png"]
    assert store.waiting() == ["0427.png", "a.png"] and store.is_image("0427.png")
    assert list_labelled_images(folder) == []  # not trained under its file name
    assert store.take_new_images() == []


def test_review_mode_keeps_names_as_labels(tmp_path):
    folder = image_folder(tmp_path, ["1234.png", "5678.png"])
    store = LabelStore(folder)  # not opened for labelling
    assert store.waiting() == [] and store.state("1234.png") == LabelRow("1234")


def test_order_queue():
    suggestions = {"a": Reading("1", 0.9), "b": Reading("2", 0.2), "c": Reading("3", 0.5)}
    names = ["c", "d", "a", "b"]
    assert order_queue(names, suggestions, "uncertain") == ["d", "b", "c", "a"]
    assert order_queue(names, suggestions, "confident") == ["a", "c", "b", "d"]
    assert order_queue(names, suggestions, "name") == ["a", "b", "c", "d"]
    with pytest.raises(BadAnswer):
        order_queue(names, suggestions, "random")


def test_labels_format_takes_their_lengths_and_kinds_of_character():
    spec = ModelSpec("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 48, 160, 8, 3)
    labels = ["ab3de", "x9yz2k"] * (FORMAT_MIN_LABELS // 2)
    assert labels_format(labels[:-1], spec) is None, "too few labels to tell a format"
    found = labels_format(labels, spec)
    assert found == TextFormat("0123456789abcdefghijklmnopqrstuvwxyz", (5, 6))
    assert describe_format(found) == "5-6 characters: digits, lower case"
    assert labels_format([*labels, "QR"], spec) == TextFormat(spec.charset, (2, 6))
    assert labels_format(["ABCD"] * FORMAT_MIN_LABELS, spec).charset == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert labels_format(["@#!$"] * FORMAT_MIN_LABELS, spec) is None, "no character of the model is of that kind"
    assert labels_format(["a" * 41] * FORMAT_MIN_LABELS, spec) is None, "longer than 40 time steps can hold"
    assert labels_format(["abcde"] * FORMAT_MIN_LABELS + ["a" * 45], spec).lengths == (5, 40)


def test_without_reports_named_the_page_reviews_its_own_models_reports(tmp_path):
    folder = image_folder(tmp_path, ["1111.png", "2222.png"])
    store = LabelStore(folder)
    work = folder / WORK_DIR
    work.mkdir()
    assert open_reviews(store, []) == []
    # What `label_training` and `--audit DIR --model DIR/.labelling/model.keras` write beside the page's model.
    (work / "model.evaluation.json").write_text(json.dumps({"misreads": [
        {"path": str(folder / "2222.png"), "truth": "2222", "pred": "222", "confidence": 0.4}]}))
    (work / "model.audit.json").write_text(json.dumps([
        {"path": str(folder / "1111.png"), "label": "1111", "pred": "1117", "p_label": 0.01}]))
    assert [(i.name, i.source) for i in open_reviews(store, [])] == [
        ("1111.png", "model.audit.json"), ("2222.png", "model.evaluation.json")]


def test_reviews_from_audit_and_evaluation_reports(tmp_path):
    folder = image_folder(tmp_path, ["1111.png", "2222.png", "3333.png", "4444.png"])
    store = LabelStore(folder)
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps([
        {"path": str(folder / "2222.png"), "label": "2222", "pred": "2228", "p_label": 0.01},
        {"path": str(folder / "1111.png"), "label": "1111", "pred": "1111", "p_label": 0.3},
        {"path": "elsewhere/9999.png", "label": "9999", "pred": "9", "p_label": 0.0},
        {"path": str(folder / "3333.png"), "label": "3333", "pred": "333", "p_label": 0.2},
    ]))
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"misreads": [
        {"path": str(folder / "4444.png"), "truth": "4444", "pred": "444", "confidence": 0.4},
        {"path": str(folder / "3333.png"), "truth": "3333", "pred": "33", "confidence": 0.1}]}))
    items = open_reviews(store, [audit, evaluation])
    assert [(i.name, i.pred, i.source) for i in items] == [
        ("2222.png", "2228", "audit.json"), ("3333.png", "333", "audit.json"), ("4444.png", "444", "evaluation.json")]
    store.answer("2222.png", "2222", "reviewed")
    store.answer("3333.png", "3338")
    assert [i.name for i in open_reviews(store, [audit, evaluation])] == ["4444.png"]


def test_an_evaluations_surest_misreads_are_reviewed_first(tmp_path):
    folder = image_folder(tmp_path, ["1111.png", "2222.png", "3333.png"])
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"misreads": [
        {"path": str(folder / name), "truth": name[:4], "pred": "0000", "confidence": confidence}
        for name, confidence in [("1111.png", 0.3), ("2222.png", 0.9), ("3333.png", 0.6)]]}))
    assert [i.name for i in open_reviews(LabelStore(folder), [evaluation])] == ["2222.png", "3333.png", "1111.png"]


@pytest.mark.parametrize("report", [{"misreads": [1]}, {"misreads": [{"path": "1111.png"}]}, [{"pred": "1", "label": "2"}]])
def test_a_malformed_review_report_is_a_one_line_error(tmp_path, report):
    folder = image_folder(tmp_path, ["1111.png"])
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    with pytest.raises(DatasetError, match="report.json: an entry is not one of an audit or evaluation report"):
        open_reviews(LabelStore(folder), [path])


def test_a_file_that_is_no_report_says_so(tmp_path):
    folder = image_folder(tmp_path, ["1111.png"])
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"results": []}))
    with pytest.raises(DatasetError, match="neither an audit report"):
        open_reviews(LabelStore(folder), [path])


def test_training_progress_from_keras_lines():
    progress = TrainingProgress()
    for line in ["Epoch 3/40", "6/6 - 1s - 150ms/step - cer: 0.5 - loss: 9.1 - seq_acc: 0.1 - val_cer: 0.4"
                 " - val_loss: 8.0 - val_seq_acc: 0.2500", "noise"]:
        progress = update_progress(progress, line)
    assert progress == TrainingProgress(3, 40, 0.25)
    assert update_progress(progress, "6/6 - 1s - val_seq_acc: 5.0000e-04").val_seq_acc == 0.0005  # Keras' way
    kept = "validation: sequence accuracy 0.9500, character error rate 0.0125 (20 images, 9 s of training)"
    assert update_progress(progress, kept).val_seq_acc == 0.95, "the page shows the kept (best) epoch's score"

def test_training_progress_carries_the_verdicts_small_validation_warning():
    """The page shows the warning training prints: parsed from the line verdict.py writes, not a copy of it."""
    from captcha_reader.verdict import judge_validation

    lines = judge_validation(["1234"] * 8, ["1234"] * 4 + ["1284"] * 4, np.ones((8, 48, 128)),
                             ModelSpec("0123456789", 48, 128, 4)).lines
    progress = TrainingProgress(3, 40, 0.5)
    for line in lines:
        progress = update_progress(progress, line)
    assert progress.warning == "8 validation images cannot tell 78.5% from 21.5%"


def test_training_command_fine_tunes_with_fewer_epochs(tmp_path):
    scratch = training_command(tmp_path, tmp_path / "m.keras", None, 100)
    assert "--epochs" not in scratch and "--init-from" not in scratch
    tune = training_command(tmp_path, tmp_path / "m.keras", tmp_path / "m.keras", 400)
    assert tune[tune.index("--epochs") + 1] == str(fine_tune_epochs(400))
    assert fine_tune_epochs(100) > fine_tune_epochs(1000) >= 5
    assert fine_tune_epochs(2) == MAX_AUTO_EPOCHS, "a few labels train no longer than a training run may"


def test_the_pages_training_makes_new_images_wait_only_when_labelling(tmp_path):
    assert "--new-images-wait" in training_command(tmp_path, tmp_path / "m.keras", None, 100, new_images_wait=True)
    assert "--new-images-wait" not in training_command(tmp_path, tmp_path / "m.keras", None, 100)


def test_retraining_the_model_in_place_fine_tunes_a_copy_of_it(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"the model as it is")
    command = training_command(tmp_path, model, model, 200)
    start = Path(command[command.index("--init-from") + 1])
    assert start != model.resolve() and start.read_bytes() == b"the model as it is"


def test_suggest_reads_in_batches_and_says_why_a_file_is_unreadable(reader, tiny_data, tmp_path):
    paths = sorted(tiny_data.glob("*.png"))[:5]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    batches = list(suggest(reader, [*paths[:2], broken, *paths[2:]], batch_size=3))
    assert len(batches) == 2
    merged = {name: s for batch in batches for name, s in batch.readings.items()}
    assert sorted(merged) == sorted(p.name for p in paths)
    assert all(0 <= s.confidence <= 1 for s in merged.values())
    assert list(batches[0].problems) == ["broken.png"] and "broken.png" in batches[0].problems["broken.png"]
    in_format = {name: s for batch in suggest(reader, paths, TextFormat("17", (2, 3)))
                 for name, s in batch.readings.items()}
    assert len(in_format) == 5 and all(2 <= len(s.text) <= 3 and set(s.text) <= set("17") for s in in_format.values())
