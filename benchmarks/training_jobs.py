"""Training jobs of the benchmarks, each in its own process so that its peak memory is its own.

    spawn(job, log)   # runs `python benchmarks/training_jobs.py JOB_JSON` and returns its result

A job is a JSON object: {"kind": "recipe", "recipe": "A" | "B" | "C", ...} trains one
recipe within a budget and measures it on a test folder; {"kind": "plateau", ...} records
the validation CER of the first epochs of the default training with one seed;
{"kind": "every-epoch", ...} runs the default training to its last planned epoch and scores
the test folder after each one. The process prints its result as its last line, `RESULT {...}`.
"""

import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from common import measure_inference
from keras_example import build_keras_example

from captcha_reader.base import ModelSpec
from captcha_reader.data import (
    LabelledImages,
    encode_labels,
    infer_spec,
    labelled_items,
    load_images,
    load_training_images,
    split_indices,
)
from captcha_reader.decoding import score
from captcha_reader.labels import label_from_filename, list_images
from captcha_reader.metrics import CharacterErrorRate, SequenceAccuracy
from captcha_reader.model import KerasReader, build_model
from captcha_reader.readers import open_reader
from captcha_reader.settings import TrainingSettings, plan_training
from captcha_reader.tf_import import keras, tf
from captcha_reader.training import fit, in_memory, make_dataset, save_model

# The Keras example's own training settings (recipes A and B).
KERAS_EXAMPLE = {"img_height": 50, "img_width": 200, "batch_size": 16, "epochs": 100, "patience": 10, "augment": False}


class PreparedData(NamedTuple):
    """A training folder decoded and split as ocr_captcha.py does it."""

    spec: ModelSpec
    data: LabelledImages
    train_idx: object
    val_idx: object
    labels: object  # encoded


def prepare_training(settings: TrainingSettings) -> PreparedData:
    """Seeded weights, and the folder decoded and split as training does it."""
    keras.utils.set_random_seed(settings.seed)
    items = labelled_items(settings.data_dir)
    spec = infer_spec(items, settings.img_height, settings.img_width)
    data = load_training_images(items, spec, settings.data_dir)
    train_idx, val_idx = split_indices(len(data.labels), settings.val_split, settings.seed)
    return PreparedData(spec, data, train_idx, val_idx, encode_labels(data.labels, spec))


def milestones_callback(budget: float, started: float) -> keras.callbacks.Callback:
    """A callback that records when validation accuracy first reaches 90% and 99%, and enforces the budget."""

    class Milestones(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.reached: dict[float, dict] = {}
            self.epochs = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epochs = epoch + 1
            elapsed = time.monotonic() - started
            for target in (0.90, 0.99):
                if logs.get("val_seq_acc", 0) >= target and target not in self.reached:
                    self.reached[target] = {"seconds": round(elapsed, 1), "epochs": epoch + 1}
            if elapsed > budget:
                self.model.stop_training = True

    return Milestones()


def train_elements(prepared: PreparedData) -> tf.data.Dataset:
    """The unbatched training pairs of a prepared folder."""
    images, labels = prepared.data.images[prepared.train_idx], prepared.labels[prepared.train_idx]
    return in_memory(images, labels)


def run_plateau(job: dict) -> dict:
    """The first job['epochs'] epochs of the default training with one seed: validation CER after each."""
    work = Path(job["work"])
    settings = TrainingSettings(data_dir=job["train_dir"], seed=job["seed"], verbose=2)
    prepared = prepare_training(settings)
    val_cer = []

    class FirstEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            val_cer.append(round(float(logs["val_cer"]), 4))
            self.model.stop_training = epoch + 1 >= job["epochs"]

    # fit() plans the schedule for the whole default run; stopping early keeps its first epochs as they are.
    fit(build_model(prepared.spec), train_elements(prepared), len(prepared.train_idx),
        prepared.data.images[prepared.val_idx], prepared.labels[prepared.val_idx], settings, work, [FirstEpochs()])
    return {"seed": job["seed"], "val_cer_by_epoch": val_cer,
            "first_epoch_val_cer_under_50pct": next((i + 1 for i, cer in enumerate(val_cer) if cer < 0.5), None)}


def run_every_epoch(job: dict) -> dict:
    """The default training on job['train_dir'] without early stopping; validation and test scores after each epoch."""
    settings = TrainingSettings(data_dir=job["train_dir"], seed=job["seed"], epochs=job.get("epochs"), verbose=2)
    prepared = prepare_training(settings)
    Path(job["work"]).mkdir(parents=True, exist_ok=True)
    plan = plan_training(settings, len(prepared.train_idx))
    test = load_images(labelled_items(job["test_dir"]), prepared.spec)
    epochs = []

    class TestEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # fit() swaps the averaged weights in before this: the weights early stopping would keep.
            seq_acc, cer = score(test.labels, [r.text for r in KerasReader(self.model).read_arrays(test.images)])
            epochs.append({**{name: round(float(logs[name]), 5) for name in ("val_loss", "val_cer", "val_seq_acc")},
                           "test_seq_acc": seq_acc, "test_cer": cer})

    # Patience as long as the run: every planned epoch runs, on the schedule the default run plans.
    fit(build_model(prepared.spec), train_elements(prepared), len(prepared.train_idx),
        prepared.data.images[prepared.val_idx], prepared.labels[prepared.val_idx],
        replace(settings, patience=plan.epochs), Path(job["work"]), [TestEachEpoch()])
    return {"patience": plan.patience, "train_images": int(len(prepared.train_idx)),
            "val_images": int(len(prepared.val_idx)), "test_images": len(test.labels), "epochs": epochs}


def train_keras_example(prepared: PreparedData, shuffle_seed: int | None, batch_norm: bool,
                        callbacks: list) -> keras.Model:
    """Recipes A and B: the Keras example's network and training (Adam 1e-3, early stopping on val loss)."""
    model = build_keras_example(prepared.spec, batch_norm=batch_norm)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CTC(),
                  metrics=[SequenceAccuracy(), CharacterErrorRate()])
    data, labels = prepared.data.images, prepared.labels
    train_ds = make_dataset(data[prepared.train_idx], labels[prepared.train_idx], 16, shuffle_seed)
    val_ds = make_dataset(data[prepared.val_idx], labels[prepared.val_idx], 16)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    model.fit(train_ds, validation_data=val_ds, epochs=KERAS_EXAMPLE["epochs"], callbacks=[stop, *callbacks],
              verbose=2)
    return model


def run_recipe(job: dict) -> dict:
    """Train one recipe on job['train_dir'] within job['budget'] seconds and measure it on job['test_dir']."""
    recipe, work = job["recipe"], Path(job["work"])
    work.mkdir(parents=True, exist_ok=True)
    own = {} if recipe == "C" else KERAS_EXAMPLE
    settings = TrainingSettings(data_dir=job["train_dir"], verbose=2, **{**own, **job.get("settings", {})})
    prepared = prepare_training(settings)
    started = time.monotonic()
    milestones = milestones_callback(job["budget"], started)
    if recipe == "C":
        model = build_model(prepared.spec)
        fit(model, train_elements(prepared), len(prepared.train_idx), prepared.data.images[prepared.val_idx],
            prepared.labels[prepared.val_idx], settings, work, [milestones])
    else:
        model = train_keras_example(prepared, settings.seed if recipe == "B" else None, recipe == "B", [milestones])
    train_seconds = time.monotonic() - started

    model_path = work / "model.keras"
    save_model(model, model_path)
    reader = open_reader(model_path)
    test_files = list_images(job["test_dir"])
    readings = reader.read(test_files)
    truths = [label_from_filename(p) for p in test_files]
    seq_acc, cer = score(truths, [r.text for r in readings])
    reached = milestones.reached
    return {
        "recipe": recipe,
        "input": f"{prepared.spec.height}x{prepared.spec.width}",
        "train_images": int(len(prepared.train_idx)),
        "seconds_to_90": reached.get(0.90, {}).get("seconds"),
        "epochs_to_90": reached.get(0.90, {}).get("epochs"),
        "seconds_to_99": reached.get(0.99, {}).get("seconds"),
        "epochs_to_99": reached.get(0.99, {}).get("epochs"),
        "epochs_run": milestones.epochs,
        "train_seconds": round(train_seconds, 1),
        "test_seq_acc": seq_acc,
        "test_cer": cer,
        "test_misreads": sum(t != r.text for t, r in zip(truths, readings)),
        "params": int(model.count_params()),
        "model_mb": round(model_path.stat().st_size / 1e6, 3),
        **measure_inference(reader, test_files),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "budget_s": job["budget"],
    }


def spawn(job: dict, log: Path) -> dict:
    """Run a job in a fresh Python process and return its result."""
    command = [sys.executable, str(Path(__file__).resolve()), json.dumps(job)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write_text(completed.stdout)
    results = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not results:
        raise RuntimeError(f"job {job} failed (exit {completed.returncode}); see {log}")
    return json.loads(results[-1][len("RESULT "):])


def main(job_json: str) -> int:
    """Run one job and print its result as the last line."""
    job = json.loads(job_json)
    runs = {"plateau": run_plateau, "every-epoch": run_every_epoch, "recipe": run_recipe}
    result = runs[job["kind"]](job)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
