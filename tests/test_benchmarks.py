"""benchmarks/run.py --quick: the harness runs end to end and writes its results (not a speed test)."""

import json
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_writes_results(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    recipes = results["recipes"]["recipes"]
    assert set(recipes) == {"A", "B", "C"}
    for row in recipes.values():
        assert row["test_seq_acc"] is not None and row["images_per_s"] > 0 and row["params"] > 0
        assert row["peak_rss_mb"] > 0 and row["model_mb"] > 0
    assert results["recipes"]["cli"]["predict_test_png_s"] > 0
    assert results["datasets"]["results"]["quick_audit"]["corrupted"] == 5
    assert len(results["datasets"]["results"]["quick_plateau"]["runs"][0]["val_cer_by_epoch"]) == 1
    runtimes = results["runtimes"]
    assert runtimes["lite_same_texts"] >= 31 and runtimes["savedmodel_same_texts"] >= 31
    assert runtimes["cli_lite_s"] > 0 and runtimes["lite_images_per_s"] > 0
    assert results["workers"]["two_workers_same_global_batch"]["seconds"] > 0
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| C |" in markdown and "Label audit" in markdown and "light runtime" in markdown
    assert "Leaving the CTC loss plateau" in markdown


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
