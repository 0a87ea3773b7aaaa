"""benchmarks/: the harness runs end to end in smoke mode and never writes the committed results."""

import json
import subprocess
import sys

from conftest import ROOT

RUN = [sys.executable, str(ROOT / "benchmarks" / "run.py")]


def test_quick_recipes_and_runtimes_write_results_elsewhere(tmp_path):
    result = subprocess.run([*RUN, "--quick", "--suite", "recipes,runtimes", "--recipes", "C", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    recipes = results["recipes"]["recipes"]
    assert set(recipes) == {"C"}
    for row in recipes.values():
        assert row["test_seq_acc"] is not None and row["images_per_s"] > 0 and row["params"] > 0
        assert row["peak_rss_mb"] > 0 and row["model_mb"] > 0
    assert results["recipes"]["cli"]["predict_test_png_s"] > 0
    runtimes = results["runtimes"]
    assert runtimes["lite_same_texts"] >= 31 and runtimes["savedmodel_same_texts"] >= 31
    assert runtimes["cli_lite_s"] > 0 and runtimes["lite_images_per_s"] > 0
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| C |" in markdown and "light runtime" in markdown


def test_quick_run_refuses_the_committed_results_folder():
    committed = (ROOT / "benchmarks" / "results.json").read_bytes()
    result = subprocess.run([*RUN, "--quick", "--suite", "recipes"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--out" in result.stderr
    assert (ROOT / "benchmarks" / "results.json").read_bytes() == committed


def test_committed_results_render(tmp_path):
    (tmp_path / "results.json").write_bytes((ROOT / "benchmarks" / "results.json").read_bytes())
    result = subprocess.run([*RUN, "--suite", "render", "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "Label audit" in markdown and "Leaving the CTC loss plateau" in markdown and "Two local workers" in markdown
    assert markdown == (ROOT / "benchmarks" / "RESULTS.md").read_text(), \
        "benchmarks/RESULTS.md is stale: python benchmarks/run.py --suite render"


def test_benchmarks_sample_the_shipped_data_from_its_first_8000_images():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import first_shipped_images

    first = first_shipped_images()
    labels = [label for _, label in first]
    assert len(first) == 8000 and len(set(labels)) == 8000  # the first 8,000 draws have unique labels
    assert [path.name for path, _ in first] == sorted(path.name for path, _ in first)
    assert {path.name for path, _ in first_shipped_images(100)} <= {path.name for path, _ in first}


def test_early_stopping_refuses_an_unknown_dataset_name(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "early_stopping.py"), "--quick", "--only",
                             "shipped, 24,000", "--out", str(tmp_path / "es.json"), "--work", str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no dataset shipped, 24,000" in result.stderr
    assert not (tmp_path / "es.json").exists()


def test_quick_decoding_benchmark_compares_the_decoders(trained_model, tmp_path):
    out = tmp_path / "decoding.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decoding.py"), "--quick",
                             "--model", str(trained_model), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["count"] == 64 and results["quick"] and results["model_lengths"] == results["format_lengths"] == [4, 4]
    assert results["decoders"]["format"]["other_length"] == 0
    assert all(row["decode_images_per_s"] > 0 and 0 <= row["seq_acc"] <= 1 for row in results["decoders"].values())
    assert "| format |" in result.stdout and "| greedy |" in result.stdout


def test_early_stopping_replay_keeps_the_best_epoch_and_stops_after_patience():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from early_stopping import MONITORS, replay

    epochs = [{"val_loss": loss, "val_cer": cer, "val_seq_acc": 1 - cer}
              for loss, cer in ((5.0, 0.5), (1.0, 0.2), (0.9, 0.1), (0.8, 0.1), (0.85, 0.05), (0.95, 0.06), (1.1, 0.07))]
    assert replay(epochs, MONITORS["val_loss"], patience=2) == (3, 5)
    assert replay(epochs, MONITORS["val_cer, then val_loss"], patience=2) == (4, 6)
    assert replay(epochs, MONITORS["val_cer, then val_loss"], patience=5) == (4, 6)  # ran out of epochs
    assert replay(epochs[:4], MONITORS["val_seq_acc, then val_loss"], patience=1) == (3, 3)  # the tie goes to the loss


HUMAN_READING = [sys.executable, str(ROOT / "benchmarks" / "human_reading.py")]


def run_human_reading(*args: str) -> subprocess.CompletedProcess:
    """benchmarks/human_reading.py with these arguments."""
    return subprocess.run([*HUMAN_READING, *args], capture_output=True, text=True, timeout=120)


def blank_captchas(folder, names):
    """Identical white images under the given file names."""
    from PIL import Image

    folder.mkdir()
    for name in names:
        Image.new("RGB", (60, 25), "white").save(folder / name)
    return folder


def test_human_reading_pages_do_not_show_the_labels(tmp_path):
    first = blank_captchas(tmp_path / "first", ["AB12.png", "CD34.png", "EF56.png"])
    second = blank_captchas(tmp_path / "second", ["ZZ99.png", "YY88.png", "XX77.png"])
    for folder in (first, second):
        result = run_human_reading("sheet", str(folder), "--count", "3", "--out", str(tmp_path / f"{folder.name}_sheet"))
        assert result.returncode == 0, result.stderr[-3000:]
    pages = [(tmp_path / f"{name}_sheet" / "page_01.png").read_bytes() for name in ("first", "second")]
    assert pages[0] == pages[1]


def test_human_reading_samples_by_seed_and_scores_line_by_line(tmp_path):
    folder = blank_captchas(tmp_path / "captchas", ["AB12.png", "AB12_2.png", "CD34.png", "EF56.png", "GH78.png"])
    keys = {}
    for seed in (3, 3, 4):
        reading = tmp_path / f"reading_{len(keys)}"
        result = run_human_reading("sheet", str(folder), "--count", "5", "--seed", str(seed), "--out", str(reading))
        assert result.returncode == 0, result.stderr[-3000:]
        keys[reading] = json.loads((reading / "key.json").read_text())
    first, again, other = keys.values()
    assert first == again and first["files"] != other["files"]
    assert all(label == name.split("_")[0].removesuffix(".png") for name, label in zip(first["files"], first["labels"]))

    reading, labels = next(iter(keys)), first["labels"]
    wrong = "Q" + labels[3][1:]
    (reading / "answers.txt").write_text(f"{labels[0]}\n\n{labels[2]}\n{wrong}\n{labels[4]}\n")
    results = tmp_path / "human.json"
    scored = run_human_reading("score", str(reading), "--family", "toy", "--results", str(results))
    assert scored.returncode == 0, scored.stderr[-3000:]
    toy = json.loads(results.read_text())["toy"]
    assert (toy["right"], toy["count"], toy["unread"]) == (3, 5, 1)
    assert [(row["number"], row["read"]) for row in toy["misreads"]] == [(2, ""), (4, wrong)]
    assert [labels[3][0] + "->Q", 1] in toy["confusions"]
    assert 0.2 < toy["interval_95"][0] < 0.3 and 0.85 < toy["interval_95"][1] < 0.9  # Wilson: 0.231-0.882
    assert "| toy | 5 | 3 (60.0%) |" in scored.stdout


def test_human_reading_refuses_bad_input_in_one_line(tmp_path):
    folder = blank_captchas(tmp_path / "captchas", ["AB12.png", "CD34.png"])
    reading = tmp_path / "reading"
    assert run_human_reading("sheet", str(folder), "--count", "2", "--out", str(reading)).returncode == 0
    (reading / "answers.txt").write_text("AB 12\nCD34\n")
    cases = {
        "one reading per line, without spaces": ("score", str(reading), "--family", "toy"),
        "fewer than --count 3": ("sheet", str(folder), "--count", "3", "--out", str(tmp_path / "more")),
        "give each sample a folder of its own": ("sheet", str(folder), "--count", "2", "--out", str(reading)),
        "no such folder": ("sheet", str(tmp_path / "nowhere"), "--out", str(tmp_path / "none")),
        "not a number of images": ("sheet", str(folder), "--count", "0", "--out", str(tmp_path / "zero")),
    }
    for message, args in cases.items():
        result = run_human_reading(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3
    (folder / "EF56.png").write_bytes(b"not a png")
    broken = run_human_reading("sheet", str(folder), "--count", "3", "--out", str(tmp_path / "broken"))
    assert broken.returncode != 0 and broken.stderr.strip().splitlines() == [
        f"error: {folder / 'EF56.png'}: not a readable image (not PNG, JPEG, GIF, BMP or WEBP)"]
    assert not (tmp_path / "broken").exists()
