"""captcha_reader.pseudo_labels: --unlabelled, a first run on the labels and a second with its sure readings."""

import json
import shutil
from pathlib import Path

import pytest
import make_captchas
from helpers import one_error_line, train_one_epoch

from captcha_reader import pseudo_labels, training
from captcha_reader.base import DatasetError
from captcha_reader.data import labelled_items
from captcha_reader.files import beside_model, scratch_dir
from captcha_reader.readers import open_reader


def unlabelled_pool(folder: Path, count: int) -> list[Path]:
    """`count` new captchas of tiny_data's family, under names that carry no label."""
    make_captchas.main(["--out", str(folder), "--count", str(count), "--seed", "8"])
    return [path.rename(folder / f"unlabelled_{i}.png") for i, path in enumerate(sorted(folder.glob("*.png")))]


def test_unlabelled_images_join_the_second_run_and_nothing_is_lost(trained_model, tiny_data, tmp_path, monkeypatch,
                                                                  capsys):
    # Every reading is sure: the plumbing is tested, not the bar.
    monkeypatch.setattr(pseudo_labels, "PSEUDO_LABEL_CONFIDENCE", 0.0)
    real_run = training.train_and_save

    def first_run_is_the_fixture(settings, strategy, chief, items, pseudo_labels=None):
        """The first run's model is trained_model (same data, seed and split), to spare the suite a training."""
        if pseudo_labels:
            return real_run(settings, strategy, chief, items=items, pseudo_labels=pseudo_labels)
        shutil.copy(trained_model, settings.model)
        return open_reader(settings.model)

    monkeypatch.setattr(pseudo_labels, "train_and_save", first_run_is_the_fixture)
    pool = unlabelled_pool(tmp_path / "pool", 12)
    model = tmp_path / "out" / "m.keras"
    model.parent.mkdir()
    shutil.copy(trained_model, model)
    assert train_one_epoch(tmp_path, tiny_data, "--unlabelled", str(tmp_path / "pool")) == 0
    out = capsys.readouterr().out
    assert "12 read with confidence at least 0.0" in out
    assert "training on 70 images" in out, "the readings join the 58 labelled training images"
    assert (tmp_path / "out" / "m.prev.keras").read_bytes() == trained_model.read_bytes(), "the user's model is kept"
    first_readings = [r.text for r in open_reader(trained_model).read(pool)]
    split = json.loads((tmp_path / "out" / "m.split.json").read_text())
    assert split["pseudo_labelled"]["files"] == {path.name: text for path, text in zip(pool, first_readings)}
    record = split["pseudo_labelled"]
    assert (record["folder"], record["min_confidence"]) == (str(tmp_path / "pool"), 0.0)
    first_split = json.loads(beside_model(trained_model, "split.json").read_text())
    assert split["validation"] == first_split["validation"], "validation stays on the same labelled images"


def test_no_sure_reading_stops_before_the_second_run(trained_model, tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pseudo_labels, "PSEUDO_LABEL_CONFIDENCE", 1.01)
    first_runs = []

    def first_run(settings, strategy, chief, items, pseudo_labels=None):
        """The first run's model is trained_model, to spare the suite a training."""
        first_runs.append((settings.model, settings.test_dir, pseudo_labels, len(items)))
        shutil.copy(trained_model, settings.model)
        return open_reader(settings.model)

    monkeypatch.setattr(pseudo_labels, "train_and_save", first_run)
    unlabelled_pool(tmp_path / "pool", 4)
    assert train_one_epoch(tmp_path, tiny_data, "--unlabelled", str(tmp_path / "pool")) == 1
    assert "no unlabelled image was read with confidence at least 1.01" in one_error_line(capsys)
    first = tmp_path / "out" / "m.labels_only" / "m.keras"
    assert first_runs == [(str(first), None, None, 64)], "one run, on the labels alone, into the labels_only folder"
    assert not (tmp_path / "out" / "m.keras").exists()
    assert not list((tmp_path / "out").glob("*.training")) and not list(first.parent.glob("*.training"))


@pytest.mark.parametrize("pool, extra, message", [
    ("data", [], "every image there is labelled, a copy of a labelled image or marked in labels.csv"),
    ("test", ["--test-dir", "{test}"], "is also the --test-dir folder"),
    ("missing", [], "no such folder"),
    ("empty", [], "no images for --unlabelled"),
    ("broken", [], "no readable images among 3 files"),
    ("test", ["--test-dir", "{labels_only}"], "the first run's model and plots would be written into --test-dir"),
])
def test_unusable_unlabelled_folder_stops_before_training(pool, extra, message, tiny_data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    for i in range(3):
        (tmp_path / "broken" / f"b{i}.png").write_bytes(b"not a png")
    test = tmp_path / "test"
    shutil.copytree(tiny_data, test)
    folder = tiny_data if pool == "data" else tmp_path / pool
    extra = [flag.format(test=test, labels_only=tmp_path / "out" / "m.labels_only") for flag in extra]
    if "m.labels_only" in " ".join(extra):
        shutil.copytree(tiny_data, tmp_path / "out" / "m.labels_only")
        folder = tmp_path / "empty"
        (folder / "x.png").write_bytes((tiny_data / sorted(p.name for p in tiny_data.iterdir())[0]).read_bytes())
    assert train_one_epoch(tmp_path, tiny_data, "--unlabelled", str(folder), *extra) == 1
    assert message in one_error_line(capsys)
    assert not list((tmp_path / "out").glob("*.keras")), "no run began"
    assert not (tmp_path / "out" / "m.training").exists()


def test_copies_of_labelled_images_are_left_out_of_the_unlabelled(tiny_data, tmp_path, capsys):
    labelled = sorted(tiny_data.glob("*.png"))
    pool = unlabelled_pool(tmp_path / "pool", 1)
    for i, path in enumerate(labelled[:2]):
        shutil.copy(path, tmp_path / "pool" / f"copy_{i}.png")
    assert pseudo_labels.unlabelled_images(str(tmp_path / "pool"), [(path, "1234") for path in labelled]) == pool
    assert "left out: 2 images of" in capsys.readouterr().out
    (tmp_path / "pool" / "labels.csv").write_text(f"{pool[0].name},1234,\n")  # a person's label: not replaced
    with pytest.raises(DatasetError, match="nothing to read"):
        pseudo_labels.unlabelled_images(str(tmp_path / "pool"), [(path, "1234") for path in labelled])


def test_the_labelled_folder_gives_its_waiting_images_as_the_unlabelled(trained_model, tiny_data, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.setattr(pseudo_labels, "PSEUDO_LABEL_CONFIDENCE", 0.0)
    runs = []

    def both_runs(settings, strategy, chief, items, pseudo_labels=None):
        """The fixture model stands in for both runs; each records what it trains on."""
        runs.append((len(items), [path.name for path, _ in pseudo_labels.readings] if pseudo_labels else []))
        shutil.copy(trained_model, settings.model)
        return open_reader(settings.model)

    monkeypatch.setattr(pseudo_labels, "train_and_save", both_runs)
    folder = tmp_path / "site"
    shutil.copytree(tiny_data, folder)
    waiting = [path.rename(folder / path.name) for path in unlabelled_pool(tmp_path / "new", 3)]
    # What the labelling page writes: a waiting row per image it has not labelled yet.
    (folder / "labels.csv").write_text("path,label,note\n" + "".join(f"{path.name},,\n" for path in waiting)
                                       + f"{waiting[2].name},,unreadable\n")
    items = labelled_items(folder)
    assert len(items) == 64, "the waiting and unreadable images are not labelled"
    assert pseudo_labels.unlabelled_images(str(folder), items) == waiting[:2]
    out = capsys.readouterr().out
    assert "left out: 1 image that" in out and "left out: 64 images of" in out
    assert train_one_epoch(tmp_path, folder, "--unlabelled", str(folder)) == 0
    assert runs == [(64, []), (64, [path.name for path in waiting[:2]])]


def test_at_most_max_pseudo_labelled_readings_join_a_seeded_sample(trained_model, tiny_data, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setattr(pseudo_labels, "PSEUDO_LABEL_CONFIDENCE", 0.0)
    monkeypatch.setattr(pseudo_labels, "MAX_PSEUDO_LABELLED", 3)
    pool = unlabelled_pool(tmp_path / "pool", 6)
    joined = []

    def both_runs(settings, strategy, chief, items, pseudo_labels=None):
        """The fixture model stands in for both runs; the second records what joined."""
        shutil.copy(trained_model, settings.model)
        if pseudo_labels:
            joined.append([path for path, _ in pseudo_labels.readings])
        return open_reader(settings.model)

    monkeypatch.setattr(pseudo_labels, "train_and_save", both_runs)
    for _ in range(2):
        assert train_one_epoch(tmp_path, tiny_data, "--unlabelled", str(tmp_path / "pool")) == 0
    assert "6 sure readings are more than a second run takes: a sample of 3 (seed 1337) joins" in capsys.readouterr().out
    assert joined[0] == [pool[i] for i in (2, 4, 5)], "a seeded sample, in file order, not the first three"
    assert joined[0] == joined[1], "the same command picks the same sample"


@pytest.mark.parametrize("labels_changed", [False, True])
def test_an_interrupted_second_run_resumes_from_the_first_runs_model(labels_changed, trained_model, tiny_data, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setattr(pseudo_labels, "PSEUDO_LABEL_CONFIDENCE", 0.0)
    unlabelled_pool(tmp_path / "pool", 2)
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    if labels_changed:  # the user labelled on after the first run: its model no longer fits the labels
        sorted(data.glob("*.png"))[0].unlink()
    model = tmp_path / "out" / "m.keras"
    (scratch_dir(model) / "run-0123456789abcdef" / "backup").mkdir(parents=True)
    first = tmp_path / "out" / "m.labels_only" / "m.keras"
    first.parent.mkdir()
    shutil.copy(trained_model, first)
    shutil.copy(beside_model(trained_model, "split.json"), beside_model(first, "split.json"))  # trained on tiny_data
    runs = []

    def run(settings, strategy, chief, items, pseudo_labels=None):
        runs.append((settings.model, len(items), len(pseudo_labels.readings) if pseudo_labels else 0))
        return open_reader(first)

    monkeypatch.setattr(pseudo_labels, "train_and_save", run)
    assert train_one_epoch(tmp_path, data, "--unlabelled", str(tmp_path / "pool")) == 0
    if labels_changed:
        assert runs == [(str(first), 63, 0), (str(model), 63, 2)], "the first run again, on today's labels"
        assert "has no record of being trained on these labels (they changed" in capsys.readouterr().out
    else:
        assert runs == [(str(model), 64, 2)], "only the second run, reading with the kept first model"
