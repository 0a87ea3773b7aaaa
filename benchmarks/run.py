"""Benchmarks: the Keras example's recipe against ours, and our recipe on public datasets.

    python benchmarks/run.py --suite recipes          # A, B, C on the shipped data (about 40 minutes)
    python benchmarks/run.py --suite datasets --datasets-dir ../shared/datasets   # about 45 minutes
    python benchmarks/run.py --suite runtimes         # Keras, ONNX and SavedModel on recipe C's model
    python benchmarks/run.py --suite workers          # one process against two local workers
    python benchmarks/run.py --suite render           # rewrite RESULTS.md (after levers.py or resume.py)
    python benchmarks/run.py --quick --out /tmp/bench   # a one-minute smoke run of the harness itself

Recipes, all on our data pipeline and our CTC loss (blank 0), so that only the recipe differs:
  A  the Keras "OCR model for reading Captchas" example as published: 200x50 input, Conv 32/64,
     Dense 64, BiLSTM 128/64, Adam 1e-3, batch 16, no shuffling, early stopping on the loss
  B  A with BatchNormalization after each convolution and a training set shuffled every epoch
  C  our default model and training recipe (ocr_captcha.py with no flags)

Each training runs in its own process, so that its peak memory is its own. Results go to
results.json (the latest run of each suite) and RESULTS.md, which is generated from it.
"""

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import ocr_core  # noqa: E402

TEST_SEED = 2026  # the shipped set is seed 0 and test.png comes from seed 4242
PLATEAU_SEEDS = (1337, 1, 2, 3, 4)  # 1337 is ocr_captcha.py's default
RECIPES = ("A", "B", "C")


# ---------------------------------------------------------------------------
# Worker: one training run in its own process
# ---------------------------------------------------------------------------


def build_keras_example(spec, batch_norm: bool):
    """The Keras example's CRNN (A), optionally with BatchNormalization after each convolution (B)."""
    import keras
    from keras import layers

    import ocr_captcha

    inputs = keras.Input(shape=(spec.height, spec.width), name="image")
    x = layers.Reshape((spec.height, spec.width, 1))(inputs)
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, activation=None if batch_norm else "relu", kernel_initializer="he_normal",
                          padding="same")(x)
        if batch_norm:
            x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.MaxPooling2D(2)(x)
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((spec.width // 4, -1))(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Bidirectional(layers.LSTM(128, return_sequences=True, dropout=0.25))(x)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True, dropout=0.25))(x)
    logits = layers.Dense(spec.num_classes)(x)
    outputs = ocr_captcha.ModelInfo(**spec.to_dict(), name="model_info")(logits)
    return keras.Model(inputs, outputs, name=f"keras_example{'_bn' if batch_norm else ''}")


def milestones_callback(budget: float, started: float):
    """A Keras callback that records when validation accuracy first reaches 90% and 99%, and enforces the budget."""
    import keras

    class Milestones(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.reached = {}
            self.epochs = 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs = epoch + 1
            elapsed = time.monotonic() - started
            for target in (0.90, 0.99):
                if logs.get("val_seq_acc", 0) >= target and target not in self.reached:
                    self.reached[target] = {"seconds": round(elapsed, 1), "epochs": epoch + 1}
            if elapsed > budget:
                self.model.stop_training = True

    return Milestones()


def measure_inference(reader, test_files: list[Path]) -> dict:
    """Batched images/s (batch 256, preprocessing included, file reading excluded) and warm single-image latency."""
    blobs = [p.read_bytes() for p in test_files]
    reader.read(blobs[:256])  # warm up: trace the predict function
    started = time.perf_counter()
    for i in range(0, len(blobs), 256):
        reader.read(blobs[i:i + 256])
    images_per_second = len(blobs) / (time.perf_counter() - started)
    latencies = []
    for blob in blobs[:60]:
        begin = time.perf_counter()
        reader.read([blob])
        latencies.append(time.perf_counter() - begin)
    return {"images_per_s": round(images_per_second, 1), "latency_ms": round(1000 * statistics.median(latencies[10:]), 2)}


def prepare_training(argv: list[str], work: Path):
    """Fresh `work` folder, seeded weights, and a folder decoded and split as ocr_captcha.py does it."""
    import keras

    import ocr_captcha

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args = ocr_captcha.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    _, spec, data = ocr_captcha.load_labelled_folder(args.data_dir, work / "model.keras", None, args)
    train_idx, val_idx = ocr_captcha.split_indices(len(data.labels), args.val_split, args.seed)
    return args, spec, data, train_idx, val_idx, ocr_captcha.encode_labels(data.labels, spec)


def run_plateau(job: dict) -> dict:
    """The first job['epochs'] epochs of the default training with one seed: validation CER after each."""
    import keras
    import tensorflow as tf

    import ocr_captcha

    work = Path(job["work"])
    argv = ["--data-dir", job["train_dir"], "--model", str(work / "model.keras"), "--seed", str(job["seed"]),
            "--verbose", "2"]
    args, spec, data, train_idx, val_idx, labels = prepare_training(argv, work)
    val_cer = []

    class FirstEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            val_cer.append(round(float(logs["val_cer"]), 4))
            self.model.stop_training = epoch + 1 >= job["epochs"]

    elements = tf.data.Dataset.from_tensor_slices((data.images[train_idx], labels[train_idx])).cache()
    # fit() plans the schedule for the whole default run; stopping early keeps its first epochs as they are.
    ocr_captcha.fit(ocr_captcha.build_model(spec), elements, len(train_idx), data.images[val_idx], labels[val_idx],
                    args, work, [FirstEpochs()])
    return {"seed": job["seed"], "val_cer_by_epoch": val_cer,
            "first_epoch_val_cer_under_50pct": next((i + 1 for i, cer in enumerate(val_cer) if cer < 0.5), None)}


def run_recipe(job: dict) -> dict:
    """Train one recipe on job['train_dir'] within job['budget'] seconds and measure it."""
    import keras
    import tensorflow as tf

    import ocr_captcha
    import ocr_metrics
    import ocr_storage

    recipe, work = job["recipe"], Path(job["work"])
    argv = ["--data-dir", job["train_dir"], "--model", str(work / "model.keras"), "--verbose", "2"]
    if recipe != "C":
        argv += ["--img-height", "50", "--img-width", "200", "--batch-size", "16", "--epochs", "100",
                 "--patience", "10", "--no-augment"]
    args, spec, data, train_idx, val_idx, labels = prepare_training(argv + job.get("extra_args", []), work)
    started = time.monotonic()
    milestones = milestones_callback(job["budget"], started)
    if recipe == "C":
        model = ocr_captcha.build_model(spec)
        elements = tf.data.Dataset.from_tensor_slices((data.images[train_idx], labels[train_idx])).cache()
        ocr_captcha.fit(model, elements, len(train_idx), data.images[val_idx], labels[val_idx], args, work,
                        [milestones])
    else:
        model = build_keras_example(spec, batch_norm=recipe == "B")
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CTC(),
                      metrics=[ocr_metrics.SequenceAccuracy(), ocr_metrics.CharacterErrorRate()])
        shuffle_seed = args.seed if recipe == "B" else None
        train_ds = ocr_captcha.make_dataset(data.images[train_idx], labels[train_idx], 16, shuffle_seed)
        val_ds = ocr_captcha.make_dataset(data.images[val_idx], labels[val_idx], 16)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
        model.fit(train_ds, validation_data=val_ds, epochs=100, callbacks=[stop, milestones], verbose=2)
    train_seconds = time.monotonic() - started

    model_path = work / "model.keras"
    ocr_storage.save_model(model, model_path)
    reader = ocr_captcha.load_reader(model_path)
    test_files = ocr_core.list_images(job["test_dir"])
    readings = reader.read(test_files)
    truths = [ocr_core.label_from_filename(p) for p in test_files]
    seq_acc, cer = ocr_core.score(truths, [r.text for r in readings])
    return {
        "recipe": recipe,
        "input": f"{spec.height}x{spec.width}",
        "train_images": int(len(train_idx)),
        "seconds_to_90": milestones.reached.get(0.90, {}).get("seconds"),
        "epochs_to_90": milestones.reached.get(0.90, {}).get("epochs"),
        "seconds_to_99": milestones.reached.get(0.99, {}).get("seconds"),
        "epochs_to_99": milestones.reached.get(0.99, {}).get("epochs"),
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


def run_worker(job_json: str) -> None:
    """Entry point of a worker process: run the job and print its result as the last line."""
    job = json.loads(job_json)
    result = run_plateau(job) if job.get("kind") == "plateau" else run_recipe(job)
    print("RESULT " + json.dumps(result))


def spawn(job: dict, log: Path) -> dict:
    """Run a job in a fresh Python process and return its result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write_text(completed.stdout)
    lines = completed.stdout.splitlines()
    results = [line for line in lines if line.startswith("RESULT ")]
    if completed.returncode != 0 or not results:
        raise RuntimeError(f"job {job} failed (exit {completed.returncode}); see {log}")
    return json.loads(results[-1][len("RESULT "):])


# ---------------------------------------------------------------------------
# Suites
# ---------------------------------------------------------------------------


def generate(folder: Path, count: int, seed: int, *extra: str) -> Path:
    """Generate a captcha folder with tools/make_captchas.py unless it is already complete."""
    if folder.is_dir() and len(ocr_core.list_images(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_captchas.py"), "--out", str(folder),
                    "--count", str(count), "--seed", str(seed), *extra], check=True, stdout=subprocess.DEVNULL)
    return folder


def current_commit() -> str:
    """The short hash of the checked-out commit the numbers are measured on."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def median_wall(command: list[str], runs: int = 5) -> float:
    """Median wall time of a command over several runs, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 2)


def ddddocr_baseline(test_dir: Path) -> dict | None:
    """Zero-shot sequence accuracy and images/s of ddddocr on the test set, if it is installed."""
    try:
        import ddddocr
    except ImportError:
        return None
    files = ocr_core.list_images(test_dir)
    blobs = [p.read_bytes() for p in files]
    truths = [ocr_core.label_from_filename(p) for p in files]
    result = {}
    for name, beta in (("default", False), ("beta", True)):
        reader = ddddocr.DdddOcr(beta=beta, show_ad=False)
        reader.classification(blobs[0])
        started = time.perf_counter()
        predictions = [reader.classification(blob) for blob in blobs]
        seconds = time.perf_counter() - started
        seq_acc, cer = ocr_core.score(truths, predictions)
        result[name] = {"test_seq_acc": seq_acc, "test_cer": cer, "images_per_s": round(len(blobs) / seconds, 1)}
    return result


def recipes_suite(args: argparse.Namespace, work: Path) -> dict:
    """A, B and C on the same data, split and machine, then inference, ddddocr and CLI start-up."""
    if args.quick:
        train_dir = generate(work / "quick_train", 96, 0)
        test_dir = generate(work / "quick_test", 32, TEST_SEED)
        budget, extra = 20, ["--epochs", "1"]
    else:
        train_dir = Path(args.data_dir)
        test_dir = Path(args.test_dir) if args.test_dir else generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)
        budget, extra = args.budget, []
    rows = {}
    for recipe in RECIPES:
        job = {"recipe": recipe, "train_dir": str(train_dir), "test_dir": str(test_dir), "budget": budget,
               "work": str(work / f"recipe_{recipe}"), "extra_args": extra}
        print(f"recipe {recipe}: training (budget {budget} s)...", flush=True)
        rows[recipe] = spawn(job, work / f"recipe_{recipe}.log")
        print(f"recipe {recipe}: {json.dumps(rows[recipe])}", flush=True)
    model = work / "recipe_C" / "model.keras"
    cli = {
        "predict_test_png_s": median_wall([sys.executable, "predict_example.py", "test.png", "--model", str(model)],
                                          runs=2 if args.quick else 5),
        "import_tensorflow_s": median_wall([sys.executable, "-c", "import tensorflow"], runs=2 if args.quick else 5),
    }
    return {"train_dir": str(train_dir), "test_dir": str(test_dir), "recipes": rows,
            "test_images": len(ocr_core.list_images(test_dir)),
            "ddddocr": None if args.quick else ddddocr_baseline(test_dir), "cli": cli}


def runtimes_suite(args: argparse.Namespace, work: Path) -> dict:
    """Keras vs the ONNX light runtime vs the SavedModel on one model: agreement, images/s, CLI cold start."""
    import numpy as np
    import tensorflow as tf

    import ocr_captcha
    import ocr_export
    import ocr_lite

    model = Path(args.model) if args.model else work / "recipe_C" / "model.keras"
    if args.quick:
        test_dir = generate(work / "quick_test", 32, TEST_SEED)
    else:
        test_dir = Path(args.test_dir) if args.test_dir else generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)
    files = ocr_core.list_images(test_dir)
    keras_reader = ocr_captcha.load_reader(model)
    lite_path = work / "runtimes" / "model.onnx"
    serving_dir = work / "runtimes" / "serving"
    shutil.rmtree(work / "runtimes", ignore_errors=True)
    lite_path.parent.mkdir(parents=True)
    ocr_export.export_lite(keras_reader, lite_path)
    ocr_export.export_savedmodel(keras_reader, serving_dir)
    lite_reader = ocr_lite.load_lite_reader(lite_path)
    keras_texts = [r.text for r in keras_reader.read(files)]
    lite_texts = [r.text for r in lite_reader.read(files)]
    served = tf.saved_model.load(str(serving_dir / "1")).signatures["serving_default"]
    served_texts = [t.decode() for t in served(image_bytes=tf.constant([p.read_bytes() for p in files]))["text"].numpy()]
    truths = [ocr_core.label_from_filename(p) for p in files]
    rounds = 2 if args.quick else 5
    speeds = {name: [] for name in ("keras", "lite")}
    for _ in range(rounds):  # alternate, so that both see the same machine load
        for name, reader in (("keras", keras_reader), ("lite", lite_reader)):
            speeds[name].append(measure_inference(reader, files)["images_per_s"])
    cli = [sys.executable, "predict_example.py", "test.png", "--model"]
    return {
        "model": str(model), "test_dir": str(test_dir), "images": len(files),
        "lite_same_texts": sum(a == b for a, b in zip(keras_texts, lite_texts)),
        "savedmodel_same_texts": sum(a == b for a, b in zip(keras_texts, served_texts)),
        "keras_seq_acc": ocr_core.score(truths, keras_texts)[0], "lite_seq_acc": ocr_core.score(truths, lite_texts)[0],
        "keras_images_per_s": float(np.median(speeds["keras"])), "lite_images_per_s": float(np.median(speeds["lite"])),
        "lite_file_mb": round(lite_path.stat().st_size / 1e6, 3),
        "cli_keras_s": median_wall(cli + [str(model)], runs=rounds),
        "cli_lite_s": median_wall(cli + [str(lite_path)], runs=rounds),
        "import_tensorflow_s": median_wall([sys.executable, "-c", "import tensorflow"], runs=rounds),
    }


def workers_suite(args: argparse.Namespace, work: Path) -> dict:
    """One process against two local MultiWorkerMirroredStrategy workers, for the same data and epochs.

    Two workers at the same per-replica batch take half as many (twice as large) steps per
    epoch; two workers at half the per-replica batch take the same steps as one process, so
    their accuracy should match it.
    """
    import socket

    data = generate(work / "quick_train", 96, 0) if args.quick else Path(args.data_dir)
    epochs = "1" if args.quick else str(args.worker_epochs)
    results = {"data_dir": str(data), "epochs": int(epochs)}
    arms = {"one_process": (1, 32), "two_workers": (2, 32), "two_workers_same_global_batch": (2, 16)}
    for arm, (workers, batch) in arms.items():
        model = work / f"workers_{arm}" / "m.keras"
        shutil.rmtree(model.parent, ignore_errors=True)
        command = [sys.executable, str(ROOT / "ocr_captcha.py"), "--data-dir", str(data), "--model", str(model),
                   "--epochs", epochs, "--batch-size", str(batch), "--verbose", "2"]
        started = time.monotonic()
        if workers == 1:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            ports = []
            for _ in range(workers):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", 0))
                    ports.append(f"127.0.0.1:{probe.getsockname()[1]}")
            processes = [subprocess.Popen(command + ["--strategy", "multiworker"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env={**os.environ, "TF_CONFIG": json.dumps(
                                              {"cluster": {"worker": ports}, "task": {"type": "worker", "index": i}})})
                         for i in range(workers)]
            if any(p.wait() != 0 for p in processes):
                raise RuntimeError("a worker failed")
        seconds = time.monotonic() - started
        info = subprocess.run([sys.executable, str(ROOT / "predict_example.py"), "--info", "--json", "--model",
                               str(model)], capture_output=True, text=True, check=True)
        results[arm] = {"workers": workers, "batch_per_replica": batch, "seconds": round(seconds, 1),
                        "val_seq_acc": json.loads(info.stdout)["validation"]["seq_acc"]}
    return results


def linked_folder(folder: Path, files: list[tuple[Path, str]]) -> Path:
    """A folder of symbolic links named `<label>_<i><ext>` to the given files."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, (path, label) in enumerate(files):
        (folder / f"{label}_{i}{path.suffix.lower()}").symlink_to(path.resolve())
    return folder


def split_folders(source: Path, train_fraction: float, prefix: Path) -> tuple[Path, Path]:
    """A seeded (seed 0) split of a labelled folder by file into `<prefix>_train` and `<prefix>_test` links."""
    items = ocr_core.list_labelled_images(source)
    order = random.Random(0).sample(range(len(items)), len(items))
    cut = round(train_fraction * len(items))
    train = linked_folder(prefix.with_name(prefix.name + "_train"), [items[i] for i in order[:cut]])
    test = linked_folder(prefix.with_name(prefix.name + "_test"), [items[i] for i in order[cut:]])
    return train, test


def train_cli(data_dir: Path, test_dir: Path, work: Path, *extra: str) -> dict:
    """Train with `python ocr_captcha.py` defaults, test on a folder, and collect time and scores."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "ocr_captcha.py"), "--data-dir", str(data_dir), "--model",
                    str(work / "model.keras"), "--test-dir", str(test_dir), "--verbose", "2", *extra],
                   check=True, stdout=open(work / "train.log", "w"), stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    report = json.loads((work / "test_report.json").read_text())
    log = (work / "training_log.csv").read_text().splitlines()
    header = log[0].split(",")
    rows = [dict(zip(header, row.split(","))) for row in log[1:]]
    val_acc = [float(row["val_seq_acc"]) for row in rows]
    val_cer = [float(row["val_cer"]) for row in rows]
    return {"seconds": round(seconds, 1), "epochs": len(rows), "test_n": report["n"],
            "test_seq_acc": report["seq_acc"], "test_cer": report["cer"], "test_misreads": len(report["misreads"]),
            # Leaving the CTC loss plateau: the first epoch that reads half the validation characters right.
            "first_epoch_val_cer_under_50pct": next((i + 1 for i, cer in enumerate(val_cer) if cer < 0.5), None),
            "first_epoch_val_over_50pct": next((i + 1 for i, acc in enumerate(val_acc) if acc > 0.5), None),
            "commit": current_commit()}


def plateau_benchmark(train_dir: Path, work: Path, seeds: tuple[int, ...], epochs: int) -> dict:
    """The first epochs of the default training with several seeds (split and weights): when CTC leaves its plateau."""
    runs = [spawn({"kind": "plateau", "train_dir": str(train_dir), "seed": seed, "epochs": epochs,
                   "work": str(work / f"seed_{seed}")}, work.with_name(f"{work.name}_{seed}.log")) for seed in seeds]
    return {"train_dir": str(train_dir), "epochs": epochs, "runs": runs, "commit": current_commit()}


def audit_benchmark(source: Path, work: Path, fraction: float, seed: int, extra: list[str]) -> dict:
    """Corrupt a fraction of the labels at random, audit the copy, and count corrupted files in the top 2%."""
    items = ocr_core.list_labelled_images(source)
    rng = random.Random(seed)
    corrupted = set(rng.sample(range(len(items)), round(fraction * len(items))))
    charset = ocr_core.charset_from_labels([label for _, label in items])
    files = []
    for i, (path, label) in enumerate(items):
        if i in corrupted:
            position = rng.randrange(len(label))
            wrong = rng.choice([c for c in charset if c != label[position]])
            label = label[:position] + wrong + label[position + 1:]
        files.append((path, label))
    folder = linked_folder(work / "audit_data", files)
    names = sorted(p.name for p in folder.iterdir())
    flagged_names = {f"{files[i][1]}_{i}{files[i][0].suffix.lower()}" for i in corrupted}
    assert flagged_names <= set(names)
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "ocr_captcha.py"), "--audit", str(folder), "--model",
                    str(work / "audit" / "model.keras"), "--verbose", "2", *extra], check=True,
                   stdout=open(work / "audit.log", "w"), stderr=subprocess.STDOUT)
    ranking = json.loads((work / "audit" / "audit.json").read_text())
    top = ranking[: max(1, round(0.02 * len(ranking)))]
    caught = sum(Path(row["path"]).name in flagged_names for row in top)
    return {"files": len(items), "corrupted": len(corrupted), "top_2pct": len(top),
            "corrupted_in_top_2pct": caught, "recall": caught / max(1, len(corrupted)),
            "seconds": round(time.monotonic() - started, 1), "commit": current_commit()}


def datasets_suite(args: argparse.Namespace, work: Path) -> dict:
    """Our default recipe on real and unfamiliar datasets, small data, and the label audit."""
    shared = Path(args.datasets_dir)
    previous = json.loads((Path(args.out) / "results.json").read_text()).get("datasets", {}) \
        if (Path(args.out) / "results.json").exists() else {}
    results = dict(previous.get("results", {})) if args.only else {}
    chosen = set(args.only.split(",")) if args.only else {"henan", "v2", "plateau", "simple", "small", "audit"}
    if args.quick:
        data = generate(work / "quick_train", 96, 0)
        test = generate(work / "quick_test", 32, TEST_SEED)
        results["quick"] = train_cli(data, test, work / "quick_cli", "--epochs", "1")
        results["quick_audit"] = audit_benchmark(data, work / "quick_audit", 0.05, 1, ["--folds", "2", "--epochs", "1"])
        results["quick_plateau"] = plateau_benchmark(data, work / "quick_plateau", seeds=(1337,), epochs=1)
        return results
    if "henan" in chosen:
        train, test = split_folders(shared / "henan_uni_4digit", 0.8, work / "henan")
        results["henan_uni_4digit"] = train_cli(train, test, work / "henan")
        print("henan:", results["henan_uni_4digit"], flush=True)

    if "v2" in chosen:
        train, test = split_folders(shared / "captcha_images_v2", 0.9, work / "v2")
        results["captcha_images_v2"] = train_cli(train, test, work / "v2")
        print("v2:", results["captcha_images_v2"], flush=True)
    if "plateau" in chosen:
        train, _ = split_folders(shared / "captcha_images_v2", 0.9, work / "v2")
        results["plateau_v2"] = plateau_benchmark(train, work / "plateau", PLATEAU_SEEDS, epochs=4)
        print("plateau:", results["plateau_v2"], flush=True)
    if "simple" in chosen:
        simple = shared / "simplecaptcha_6digit"
        results["simplecaptcha_6digit"] = train_cli(simple / "train", simple / "test", work / "simple")
        print("simple:", results["simplecaptcha_6digit"], flush=True)
    if "small" in chosen:
        shipped = ocr_core.list_labelled_images(ROOT / "captcha_images")
        small = linked_folder(work / "small_train", random.Random(0).sample(shipped, 300))
        fresh = generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)
        results["small_data_300"] = train_cli(small, fresh, work / "small")
        print("small:", results["small_data_300"], flush=True)
    if "audit" in chosen:
        results["audit_henan_2pct"] = audit_benchmark(shared / "henan_uni_4digit", work / "audit", 0.02, 0,
                                                      ["--epochs", str(args.audit_epochs)])
        results["audit_henan_2pct"]["epochs_per_fold"] = args.audit_epochs
        print("audit:", results["audit_henan_2pct"], flush=True)
    return results


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def machine() -> dict:
    """The machine and versions the numbers were measured on."""
    import numpy
    import PIL

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    versions = subprocess.run([sys.executable, "-c", "import tensorflow as t, keras as k; print(t.__version__, k.__version__)"],
                              capture_output=True, text=True).stdout.split()
    return {"commit": current_commit(), "cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "tensorflow": versions[0],
            "keras": versions[1], "numpy": numpy.__version__, "pillow": PIL.__version__, "date": date.today().isoformat()}


def percent(value) -> str:
    """A fraction as a percentage, or a dash."""
    return "–" if value is None else f"{100 * value:.2f}%"


def seconds_and_epochs(row: dict, target: int) -> str:
    """'173 s (9 ep)' or 'not reached'."""
    if row.get(f"seconds_to_{target}") is None:
        return f"not reached in {row['budget_s']} s"
    return f"{row[f'seconds_to_{target}']:.0f} s ({row[f'epochs_to_{target}']} ep)"


def render_markdown(results: dict) -> str:
    """RESULTS.md from results.json."""
    lines = ["# Benchmark results", "", "Generated by `python benchmarks/run.py` from `benchmarks/results.json`;",
             "do not edit by hand. All numbers come from one run of each suite on the machine named.", ""]
    recipes = results.get("recipes")
    if recipes:
        m = recipes["machine"]
        lines += ["## Recipes: the Keras example (A), A + BatchNorm + shuffling (B), ours (C)", "",
                  f"Machine: {m['cores']} cores, {m['cpu']}, no GPU; Python {m['python']}, TensorFlow {m['tensorflow']}, "
                  f"Keras {m['keras']}; {m['date']}; commit {m.get('commit', '?')}. Command: `{recipes['command']}`.", "",
                  f"Training data: `{recipes['train_dir']}` (seeded 90/10 split, seed 1337); test: "
                  f"{recipes['test_images']:,} images in `{recipes['test_dir']}` "
                  f"(`tools/make_captchas.py --seed {TEST_SEED}` unless --test-dir was given).", "",
                  "| | input | time to 90% val | time to 99% val | training time | test seq. acc. | test CER "
                  "| params | .keras MB | images/s (batch 256) | latency ms | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, row in recipes["recipes"].items():
            lines.append(f"| {name} | {row['input']} | {seconds_and_epochs(row, 90)} | {seconds_and_epochs(row, 99)} | "
                         f"{row['train_seconds']:.0f} s ({row['epochs_run']} ep) | {percent(row['test_seq_acc'])} "
                         f"({row['test_misreads']} misreads) | {percent(row['test_cer'])} | {row['params']:,} | "
                         f"{row['model_mb']:.2f} | {row['images_per_s']:.0f} | {row['latency_ms']:.1f} | "
                         f"{row['peak_rss_mb']:.0f} |")
        b, c = recipes["recipes"].get("B"), recipes["recipes"].get("C")
        if b and c:
            ratio_99 = (c["seconds_to_99"] / b["seconds_to_99"]) if b.get("seconds_to_99") and c.get("seconds_to_99") else None
            lines += ["", f"- C / B time to 99%: {'–' if ratio_99 is None else f'{ratio_99:.2f}'}; "
                      f"C / B images/s: {c['images_per_s'] / b['images_per_s']:.2f}."]
        if recipes.get("ddddocr"):
            for name, row in recipes["ddddocr"].items():
                lines.append(f"- ddddocr ({name} model, zero-shot): {percent(row['test_seq_acc'])} sequence accuracy, "
                             f"CER {percent(row['test_cer'])}, {row['images_per_s']:.0f} images/s.")
        cli = recipes["cli"]
        lines.append(f"- CLI cold start, median of 5: `python predict_example.py test.png` {cli['predict_test_png_s']:.2f} s; "
                     f"`python -c \"import tensorflow\"` {cli['import_tensorflow_s']:.2f} s.")
        lines.append("")
    datasets = results.get("datasets")
    if datasets:
        m = datasets["machine"]
        lines += ["## Datasets: our default recipe on other captchas", "",
                  f"Machine: {m['cores']} cores, {m['cpu']}; {m['date']}; commit {m.get('commit', '?')}. "
                  f"Command: `{datasets['command']}`.", "",
                  "| dataset | split | training + test time | epochs | test seq. acc. | test CER | misreads | "
                  "first epoch with val CER < 50% | first epoch with val seq. acc. > 50% | commit |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        splits = {"henan_uni_4digit": "80/20 by file, seed 0", "captcha_images_v2": "90/10, seed 0",
                  "simplecaptcha_6digit": "train/ vs test/", "small_data_300": "300 shipped images vs 1,000 fresh",
                  "quick": "smoke run"}
        for name, row in datasets["results"].items():
            if "test_seq_acc" in row:
                lines.append(f"| {name} | {splits.get(name, '')} | {row['seconds']:.0f} s | {row['epochs']} | "
                             f"{percent(row['test_seq_acc'])} | {percent(row['test_cer'])} | "
                             f"{row['test_misreads']} of {row['test_n']} | {row.get('first_epoch_val_cer_under_50pct', '–')} | "
                             f"{row['first_epoch_val_over_50pct']} | "
                             f"{row.get('commit', m.get('commit', '?'))} |")
        for name, row in datasets["results"].items():
            if "recall" in row:
                lines.append(f"\n- Label audit ({name}): {row['corrupted']} of {row['files']} labels corrupted at random; "
                             f"{row['corrupted_in_top_2pct']} of them ({percent(row['recall'])}) rank in the top 2% "
                             f"({row['top_2pct']} files); {row['seconds']:.0f} s; commit {row.get('commit', m.get('commit', '?'))}.")
        for name, row in datasets["results"].items():
            if "runs" in row:
                epochs = range(1, row["epochs"] + 1)
                lines += ["", f"Leaving the CTC loss plateau ({name}): the first {row['epochs']} epochs of the default "
                          f"training on `{row['train_dir']}`, one run per seed (the seed picks the validation split and "
                          f"the initial weights); commit {row['commit']}.", "",
                          "| seed | " + " | ".join(f"val CER after epoch {e}" for e in epochs)
                          + " | first epoch with val CER < 50% |", "|---" * (row["epochs"] + 2) + "|"]
                for run in row["runs"]:
                    lines.append(f"| {run['seed']} | " + " | ".join(percent(c) for c in run["val_cer_by_epoch"])
                                 + f" | {run['first_epoch_val_cer_under_50pct'] or 'not within ' + str(row['epochs'])} |")
        lines.append("")
    runtimes = results.get("runtimes")
    if runtimes:
        r = runtimes
        lines += ["## Runtimes: Keras, the ONNX light runtime and the SavedModel, on one model", "",
                  f"Command: `{r['command']}`; model `{r['model']}`; {r['images']} test images.", "",
                  "| | Keras (`.keras`) | light runtime (`.onnx`, onnxruntime) |", "|---|---|---|",
                  f"| sequence accuracy | {percent(r['keras_seq_acc'])} | {percent(r['lite_seq_acc'])} |",
                  f"| images/s (batch 256, median of rounds) | {r['keras_images_per_s']:.0f} | {r['lite_images_per_s']:.0f} |",
                  f"| `python predict_example.py test.png --model ...`, median wall | {r['cli_keras_s']:.2f} s | "
                  f"{r['cli_lite_s']:.2f} s |", "",
                  f"- Texts identical to the Keras path: light runtime {r['lite_same_texts']} of {r['images']}, "
                  f"SavedModel (raw bytes in, decoding in the graph) {r['savedmodel_same_texts']} of {r['images']}.",
                  f"- `python -c \"import tensorflow\"`: {r['import_tensorflow_s']:.2f} s. ONNX file: {r['lite_file_mb']:.2f} MB.", ""]
    workers = results.get("workers")
    if workers:
        w = workers
        one = w["one_process"]["seconds"]
        lines += ["## Two local workers against one process", "",
                  f"Command: `{w['command']}`; `{w['data_dir']}`, {w['epochs']} epochs each. Both workers share "
                  "this machine's 2 cores, so the time ratio says nothing about two machines.", "",
                  "| | batch per replica (global) | wall time | / one process | validation sequence accuracy |",
                  "|---|---|---|---|---|"]
        for arm, label in (("one_process", "one process"), ("two_workers", "two workers on 127.0.0.1"),
                           ("two_workers_same_global_batch", "two workers, same global batch")):
            row = w[arm]
            lines.append(f"| {label} | {row['batch_per_replica']} ({row['batch_per_replica'] * row['workers']}) | "
                         f"{row['seconds']:.0f} s | {row['seconds'] / one:.2f} | {percent(row['val_seq_acc'])} |")
        lines.append("")
    levers = results.get("levers")
    if levers:
        m = levers["machine"]
        b_speed = next(iter(levers["variants"].values()))["images_per_s"]
        lines += ["## Inference levers: the network alone", "",
                  f"`{levers['command']}` ({m['date']}, commit {m.get('commit', '?')}): `predict_on_batch` on batches "
                  "of 256, untrained weights, no file reading or preprocessing.", "",
                  "| variant | images/s | / B | params |", "|---|---|---|---|"]
        for name, row in levers["variants"].items():
            lines.append(f"| {name} | {row['images_per_s']:.0f} | {row['images_per_s'] / b_speed:.2f} | {row['params']:,} |")
        lines.append("")
    notes = Path(__file__).with_name("levers.md")
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    resume = results.get("resume")
    if resume:
        lines += ["## Interrupted training", "",
                  f"`{resume['command']}`: {resume['images']} shipped images, {resume['epochs']} epochs, killed "
                  f"(SIGKILL) after epoch {resume['killed_after_epoch']} and run again. Validation sequence accuracy: "
                  f"{percent(resume['val_seq_acc_uninterrupted'])} uninterrupted, "
                  f"{percent(resume['val_seq_acc_interrupted'])} interrupted and resumed "
                  f"({resume['difference_points']:+.2f} points).", ""]
    return "\n".join(lines)


def main() -> int:
    """Run the chosen suites and write results.json and RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("recipes", "datasets", "runtimes", "workers", "all", "render"),
                        default="all", help="suites to run; 'render' only rewrites RESULTS.md from results.json")
    parser.add_argument("--worker-epochs", type=int, default=4, help="epochs of each run of the workers suite")
    parser.add_argument("--model", help="model of the runtimes suite (default: recipe C of the recipes suite)")
    parser.add_argument("--quick", action="store_true", help="tiny data and budgets: checks the harness, not the models")
    parser.add_argument("--data-dir", default=str(ROOT / "captcha_images"), help="training folder of the recipes suite")
    parser.add_argument("--test-dir", help="test folder of the recipes suite (default: 1,000 fresh generated images)")
    parser.add_argument("--datasets-dir", default=str(ROOT.parent / "shared" / "datasets"),
                        help="folder holding henan_uni_4digit, captcha_images_v2 and simplecaptcha_6digit")
    parser.add_argument("--budget", type=int, default=900, help="seconds of training per recipe")
    parser.add_argument("--audit-epochs", type=int, default=8, help="epochs per fold of the audit benchmark")
    parser.add_argument("--only", help="datasets suite: comma-separated subset of henan,v2,plateau,simple,small,audit, "
                                       "merged into the existing results")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder for results.json and RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return 0
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    if args.suite in ("recipes", "all"):
        results["recipes"] = {"command": command, "machine": machine(), **recipes_suite(args, work)}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    if args.suite in ("runtimes", "all"):
        results["runtimes"] = {"command": command, "machine": machine(), **runtimes_suite(args, work)}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    if args.suite in ("workers", "all"):
        results["workers"] = {"command": command, "machine": machine(), **workers_suite(args, work)}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    if args.suite in ("datasets", "all"):
        results["datasets"] = {"command": command, "machine": machine(), "results": datasets_suite(args, work)}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    (out / "RESULTS.md").write_text(render_markdown(results))
    print((out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
