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


def test_human_reading_sheets_hide_the_labels_and_score_the_answers(tmp_path):
    from PIL import Image

    folder = tmp_path / "captchas"
    folder.mkdir()
    for label in ("AB12", "CD34", "EF56", "GH78", "JK90"):
        Image.new("RGB", (60, 25), "white").save(folder / f"{label}.png")
    reading, results = tmp_path / "reading", tmp_path / "human.json"
    tool = [sys.executable, str(ROOT / "benchmarks" / "human_reading.py")]
    sheet = subprocess.run([*tool, "sheet", str(folder), "--count", "4", "--seed", "3", "--out", str(reading)],
                           capture_output=True, text=True, timeout=120)
    assert sheet.returncode == 0, sheet.stderr[-3000:]
    assert sorted(p.name for p in reading.iterdir()) == ["answers.txt", "key.json", "page_0.png"]
    labels = json.loads((reading / "key.json").read_text())["labels"]
    assert len(set(labels)) == 4
    (reading / "answers.txt").write_text("\n".join(labels[:3] + ["XXXX"]) + "\n")
    scored = subprocess.run([*tool, "score", str(reading), "--family", "toy", "--results", str(results)],
                            capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr[-3000:]
    toy = json.loads(results.read_text())["toy"]
    assert (toy["right"], toy["count"]) == (3, 4)
    assert toy["misreads"] == [{"number": 3, "file": f"{labels[3]}.png", "truth": labels[3], "read": "XXXX"}]
    assert "| toy | 4 | 3 (75.0%) |" in scored.stdout

    (reading / "answers.txt").write_text("\n".join(labels[:3]) + "\n")
    short = subprocess.run([*tool, "score", str(reading), "--family", "toy"], capture_output=True, text=True, timeout=120)
    assert short.returncode != 0 and short.stderr.strip().splitlines() == [
        f"error: {reading / 'answers.txt'} has 3 readings for 4 images"]
    missing = subprocess.run([*tool, "sheet", str(tmp_path / "nowhere"), "--out", str(reading)],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "no such folder" in missing.stderr
