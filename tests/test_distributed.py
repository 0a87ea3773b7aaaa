"""tf.distribute: a two-worker MultiWorkerMirroredStrategy run on this machine, and the strategy choice."""

import json
import os
import subprocess
import sys

from conftest import ROOT
from helpers import free_port

import ocr_captcha
from captcha_reader.distributed import is_chief, is_multiworker, make_strategy
from captcha_reader.readers import open_reader


def test_two_local_workers_train_one_model(tiny_data, tmp_path):
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    model = tmp_path / "out" / "m.keras"
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        command = [sys.executable, str(ROOT / "ocr_captcha.py"), "--data-dir", str(tiny_data), "--model", str(model),
                   "--epochs", "1", "--batch-size", "16", "--strategy", "multiworker", "--verbose", "2"]
        processes.append(subprocess.Popen(command, env={**os.environ, "TF_CONFIG": json.dumps(config)},
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "global batch 32" in outputs[0] and "worker 0 (2 workers)" in outputs[0]
    assert "the chief writes the model" in outputs[1] and "saved" not in outputs[1]
    assert sorted(p.name for p in model.parent.iterdir()) == [
        "m.keras", "m.learning_curve.png", "m.model_structure.png", "m.sample_predictions.png", "m.split.json",
        "m.training_log.csv"]
    reader = open_reader(model)
    assert len(reader.read(sorted(tiny_data.iterdir())[:4])) == 4


def test_auto_strategy_without_gpus_is_the_default_one():
    strategy = make_strategy("auto")
    assert strategy.num_replicas_in_sync == 1 and is_chief(strategy)
    assert not is_multiworker(strategy)


def test_multiworker_without_tf_config_is_a_clear_error(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / "m.keras"),
                             "--strategy", "multiworker"]) == 1
    assert "TF_CONFIG" in capsys.readouterr().err
