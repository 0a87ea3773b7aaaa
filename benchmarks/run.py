"""Benchmarks: the Keras example's recipe against ours, and our recipe on public datasets.

    python benchmarks/run.py --suite recipes          # A, B, C on the first 8,000 shipped images (about 40 minutes)
    python benchmarks/run.py --suite datasets --datasets-dir ../shared/datasets   # about 45 minutes
    python benchmarks/run.py --suite runtimes         # Keras, ONNX and SavedModel on recipe C's model
    python benchmarks/run.py --suite workers          # one process against two local workers
    python benchmarks/run.py --suite render           # rewrite RESULTS.md (after levers.py or resume.py)
    python benchmarks/run.py --quick --out /tmp/bench   # a smoke run of the harness itself

Recipes, all on our data pipeline and our CTC loss (blank 0), so that only the recipe differs:
  A  the Keras "OCR model for reading Captchas" example as published: 200x50 input, Conv 32/64,
     Dense 64, BiLSTM 128/64, Adam 1e-3, batch 16, no shuffling, early stopping on the loss
  B  A with BatchNormalization after each convolution and a training set shuffled every epoch
  C  our default model and training recipe (ocr_captcha.py with no flags)

Each training runs in its own process (training_jobs.py), so that its peak memory is its own.
Results go to results.json (the latest run of each suite) and RESULTS.md, which report.py
generates from it. A --quick run checks the harness and must be given its own --out folder:
it never overwrites the committed results.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import (
    ROOT,
    TEST_SEED,
    current_commit,
    first_shipped_images,
    generate,
    linked_folder,
    load_results,
    machine,
    measure_inference,
    median_wall,
    refuse_committed_output,
    save_results,
    split_folders,
)
from report import render_markdown
from training_jobs import spawn

from captcha_reader.decoding import score
from captcha_reader.export import export_lite, export_savedmodel
from captcha_reader.labels import (
    charset_from_labels,
    label_from_filename,
    list_images,
    list_labelled_images,
)
from captcha_reader.lite import load_lite_reader
from captcha_reader.readers import open_reader

PLATEAU_SEEDS = (1337, 1, 2, 3, 4)  # 1337 is ocr_captcha.py's default
BASE_SEEDS = (1337, 1, 2)
# tools/make_diverse_captchas.py; hard-b and hard2-b are kept out of every recipe decision
HARD_STYLES = ("hard", "hard-b", "hard2", "hard2-b")
HARD_TRAIN_SEED = 21
RECIPES = ("A", "B", "C")
SUITES = ("recipes", "runtimes", "workers", "datasets")


def ddddocr_baseline(test_dir: Path) -> dict | None:
    """Zero-shot sequence accuracy and images/s of ddddocr on the test set, if it is installed."""
    try:
        import ddddocr
    except ImportError:
        return None
    files = list_images(test_dir)
    blobs = [p.read_bytes() for p in files]
    truths = [label_from_filename(p) for p in files]
    result = {}
    for name, beta in (("default", False), ("beta", True)):
        reader = ddddocr.DdddOcr(beta=beta, show_ad=False)
        reader.classification(blobs[0])
        started = time.perf_counter()
        predictions = [reader.classification(blob) for blob in blobs]
        seconds = time.perf_counter() - started
        seq_acc, cer = score(truths, predictions)
        result[name] = {"test_seq_acc": seq_acc, "test_cer": cer, "images_per_s": round(len(blobs) / seconds, 1)}
    return result


def training_folder(args: argparse.Namespace, work: Path) -> Path:
    """--data-dir, or links to the first 8,000 shipped images (the set the committed results trained on)."""
    return Path(args.data_dir) if args.data_dir else linked_folder(work / "shipped_8000", first_shipped_images())


def recipes_suite(args: argparse.Namespace, work: Path) -> dict:
    """A, B and C on the same data, split and machine, then inference, ddddocr and CLI start-up."""
    if args.quick:
        train_dir = generate(work / "quick_train", 96, 0)
        test_dir = generate(work / "quick_test", 32, TEST_SEED)
        budget, settings = 20, {"epochs": 1}
    else:
        train_dir = training_folder(args, work)
        test_dir = Path(args.test_dir) if args.test_dir else generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)
        budget, settings = args.budget, {}
    rows = {}
    for recipe in args.recipes:
        job = {"kind": "recipe", "recipe": recipe, "train_dir": str(train_dir), "test_dir": str(test_dir),
               "budget": budget, "work": str(work / f"recipe_{recipe}"), "settings": settings}
        print(f"recipe {recipe}: training (budget {budget} s)...", flush=True)
        rows[recipe] = spawn(job, work / f"recipe_{recipe}.log")
        print(f"recipe {recipe}: {json.dumps(rows[recipe])}", flush=True)
    model = work / "recipe_C" / "model.keras"
    cli = {
        "predict_test_png_s": median_wall([sys.executable, "predict_example.py", "test.png", "--model", str(model)],
                                          runs=1 if args.quick else 5),
        "import_tensorflow_s": median_wall([sys.executable, "-c", "import tensorflow"], runs=1 if args.quick else 5),
    }
    return {"train_dir": str(train_dir), "test_dir": str(test_dir), "recipes": rows,
            "test_images": len(list_images(test_dir)),
            "ddddocr": None if args.quick else ddddocr_baseline(test_dir), "cli": cli}


def runtimes_suite(args: argparse.Namespace, work: Path) -> dict:
    """Keras vs the ONNX light runtime vs the SavedModel on one model: agreement, images/s, CLI cold start."""
    import numpy as np
    import tensorflow as tf

    model = Path(args.model) if args.model else work / "recipe_C" / "model.keras"
    if args.quick:
        test_dir = generate(work / "quick_test", 32, TEST_SEED)
    else:
        test_dir = Path(args.test_dir) if args.test_dir else generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)
    files = list_images(test_dir)
    keras_reader = open_reader(model)
    lite_path = work / "runtimes" / "model.onnx"
    serving_dir = work / "runtimes" / "serving"
    shutil.rmtree(work / "runtimes", ignore_errors=True)
    lite_path.parent.mkdir(parents=True)
    export_lite(keras_reader, lite_path)
    export_savedmodel(keras_reader, serving_dir)
    lite_reader = load_lite_reader(lite_path)
    keras_texts = [r.text for r in keras_reader.read(files)]
    keras_greedy_texts = [r.text for r in keras_reader.read(files, greedy=True)]  # as the SavedModel decodes
    lite_texts = [r.text for r in lite_reader.read(files)]
    served = tf.saved_model.load(str(serving_dir / "1")).signatures["serving_default"]
    served_texts = [t.decode() for t in served(image_bytes=tf.constant([p.read_bytes() for p in files]))["text"].numpy()]
    truths = [label_from_filename(p) for p in files]
    rounds = 1 if args.quick else 5
    speeds = {name: [] for name in ("keras", "lite")}
    for _ in range(rounds):  # alternate, so that both see the same machine load
        for name, reader in (("keras", keras_reader), ("lite", lite_reader)):
            speeds[name].append(measure_inference(reader, files)["images_per_s"])
    cli = [sys.executable, "predict_example.py", "test.png", "--model"]
    return {
        "model": str(model), "test_dir": str(test_dir), "images": len(files),
        "lite_same_texts": sum(a == b for a, b in zip(keras_texts, lite_texts)),
        "savedmodel_same_texts": sum(a == b for a, b in zip(keras_greedy_texts, served_texts)),
        "keras_seq_acc": score(truths, keras_texts)[0], "lite_seq_acc": score(truths, lite_texts)[0],
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
    data = generate(work / "quick_train", 96, 0) if args.quick else training_folder(args, work)
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


def train_cli(data_dir: Path, test_dir: Path, work: Path, *extra: str) -> dict:
    """Train with `python ocr_captcha.py` defaults, test on a folder, and collect time and scores."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "ocr_captcha.py"), "--data-dir", str(data_dir), "--model",
                    str(work / "model.keras"), "--test-dir", str(test_dir), "--verbose", "2", *extra],
                   check=True, stdout=open(work / "train.log", "w"), stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    report = json.loads((work / "model.test_report.json").read_text())
    validation = re.search(r"^validation: sequence accuracy ([0-9.]+)", (work / "train.log").read_text(), re.MULTILINE)
    log = (work / "model.training_log.csv").read_text().splitlines()
    header = log[0].split(",")
    rows = [dict(zip(header, row.split(","))) for row in log[1:]]
    val_acc = [float(row["val_seq_acc"]) for row in rows]
    val_cer = [float(row["val_cer"]) for row in rows]
    return {"seconds": round(seconds, 1), "epochs": len(rows), "test_n": report["n"],
            "val_seq_acc": float(validation.group(1)) if validation else None,
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
    items = list_labelled_images(source)
    rng = random.Random(seed)
    corrupted = set(rng.sample(range(len(items)), round(fraction * len(items))))
    charset = charset_from_labels([label for _, label in items])
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
    ranking = json.loads((work / "audit" / "model.audit.json").read_text())
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
    chosen = set(args.only.split(",")) if args.only else {"henan", "v2", "plateau", "simple", "small", "audit", "hard",
                                                          "v2-base", "simple-base"}
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
        results["captcha_images_v2"] = train_cli(train, test, work / "v2", "--init-from", "scratch")
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
        small = linked_folder(work / "small_train", random.Random(0).sample(first_shipped_images(), 300))
        fresh = generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)
        results["small_data_300"] = train_cli(small, fresh, work / "small")
        print("small:", results["small_data_300"], flush=True)
    if "hard" in chosen:  # our hard families: 2,000 labels (the default 10% validation), 1,000 fresh test images
        for style in HARD_STYLES:
            train = generate(work / f"{style}_train", 2000, HARD_TRAIN_SEED, "--style", style, tool="make_diverse_captchas.py")
            test = generate(work / f"{style}_test", 1000, TEST_SEED, "--style", style, tool="make_diverse_captchas.py")
            results[f"{style}_2000"] = train_cli(train, test, work / style)
            print(f"{style}:", results[f"{style}_2000"], flush=True)
    if "v2-base" in chosen:  # the small real sets again, fine-tuning the shipped base model (v2's default start)
        train, test = split_folders(shared / "captcha_images_v2", 0.9, work / "v2")
        for seed in BASE_SEEDS:
            results[f"captcha_images_v2_base_seed{seed}"] = train_cli(train, test, work / f"v2_base_{seed}",
                                                                      "--init-from", "base", "--seed", str(seed))
            print(f"v2 from base, seed {seed}:", results[f"captcha_images_v2_base_seed{seed}"], flush=True)
    if "simple-base" in chosen:
        simple = shared / "simplecaptcha_6digit"
        results["simplecaptcha_6digit_base"] = train_cli(simple / "train", simple / "test", work / "simple_base",
                                                         "--init-from", "base")
        print("simple from base:", results["simplecaptcha_6digit_base"], flush=True)
    if "audit" in chosen:
        results["audit_henan_2pct"] = audit_benchmark(shared / "henan_uni_4digit", work / "audit", 0.02, 0,
                                                      ["--epochs", str(args.audit_epochs)])
        results["audit_henan_2pct"]["epochs_per_fold"] = args.audit_epochs
        print("audit:", results["audit_henan_2pct"], flush=True)
    return results


def suite_names(text: str) -> list[str]:
    """argparse type: a comma-separated list of suites, `all`, or `render`."""
    names = list(SUITES) if text == "all" else [] if text == "render" else text.split(",")
    unknown = set(names) - set(SUITES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown suite {', '.join(sorted(unknown))}; choose from "
                                         f"{', '.join(SUITES)}, all or render")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=suite_names, default="all",
                        help="comma-separated suites (recipes, runtimes, workers, datasets), all, or render: "
                             "only rewrite RESULTS.md from results.json (default: all)")
    parser.add_argument("--worker-epochs", type=int, default=4, help="epochs of each run of the workers suite")
    parser.add_argument("--model", help="model of the runtimes suite (default: recipe C of the recipes suite)")
    parser.add_argument("--quick", action="store_true", help="tiny data and budgets: checks the harness, not the models")
    parser.add_argument("--data-dir", help="training folder of the recipes and workers suites (default: the first "
                                           "8,000 shipped images, the set the committed results trained on, when the "
                                           "default epochs for it were 15; they are 14 now)")
    parser.add_argument("--test-dir", help="test folder of the recipes suite (default: 1,000 fresh generated images)")
    parser.add_argument("--datasets-dir", default=str(ROOT.parent / "shared" / "datasets"),
                        help="folder holding henan_uni_4digit, captcha_images_v2 and simplecaptcha_6digit")
    parser.add_argument("--recipes", type=lambda text: text.split(","), default=list(RECIPES),
                        help="recipes of the recipes suite, comma-separated (default: A,B,C)")
    parser.add_argument("--budget", type=int, default=900, help="seconds of training per recipe")
    parser.add_argument("--audit-epochs", type=int, default=8, help="epochs per fold of the audit benchmark")
    parser.add_argument("--only", help="datasets suite: comma-separated subset of henan,v2,plateau,simple,small,audit,hard,v2-base,simple-base, "
                                       "merged into the existing results")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder for results.json and RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites and write results.json and RESULTS.md."""
    args = parse_args(argv)
    out = Path(args.out)
    refuse_committed_output(out, args.quick)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = load_results(results_path)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    suites = {"recipes": recipes_suite, "runtimes": runtimes_suite, "workers": workers_suite}
    for name in args.suite:
        if name == "datasets":
            results[name] = {"command": command, "machine": machine(), "results": datasets_suite(args, work)}
        else:
            results[name] = {"command": command, "machine": machine(), **suites[name](args, work)}
        save_results(results_path, results)
    (out / "RESULTS.md").write_text(render_markdown(results))
    print((out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
