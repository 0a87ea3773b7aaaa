"""What every benchmark shares: paths, generated test data, timing, the machine, the results files."""

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from captcha_reader.labels import list_images, list_labelled_images  # noqa: E402
from captcha_reader.reading import BaseReader  # noqa: E402

TEST_SEED = 2026  # the shipped set is seed 0 and test.png comes from seed 4242
SHIPPED = ROOT / "captcha_images"
SHIPPED_BEFORE_GROWTH = 8000  # the shipped set's size until it grew to 24,000
COMMITTED_RESULTS = ROOT / "benchmarks"  # results.json and RESULTS.md of full runs


def refuse_committed_output(out: Path, quick: bool) -> None:
    """A smoke run writes elsewhere: it must never replace the committed results with its figures."""
    committed = (COMMITTED_RESULTS.resolve(), (COMMITTED_RESULTS / "results").resolve())
    if quick and out.resolve() in committed:
        raise SystemExit("error: --quick writes smoke figures; give it --out DIR outside benchmarks/")


def load_results(path: Path) -> dict:
    """The results file, or an empty dict."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(path: Path, results: dict) -> None:
    """Write the results file (and its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def measure_inference(reader: BaseReader, test_files: list[Path]) -> dict:
    """Batched images/s (batch 256, preprocessing included, file reading excluded) and warm single-image latency."""
    blobs = [p.read_bytes() for p in test_files]
    reader.read(blobs[:256])  # warm up: trace the predict function for full batches
    if len(blobs) % 256:
        reader.read(blobs[:len(blobs) % 256])  # and for the last, shorter one (a new shape is a new trace)
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


def generate(folder: Path, count: int, seed: int, *extra: str, tool: str = "make_captchas.py") -> Path:
    """Generate a captcha folder with a generator of tools/ (make_captchas.py) unless it is already complete."""
    if folder.is_dir() and len(list_images(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--out", str(folder),
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


def first_shipped_images(count: int = SHIPPED_BEFORE_GROWTH) -> list[tuple[Path, str]]:
    """(path, label) of the first `count` shipped images in generation order, listed in name order.

    The shipped set grew from 8,000 to 24,000 images (make_captchas.py --seed 0, the first 8,000
    unchanged); benchmarks that sample it draw from the first 8,000 so that their committed
    results stay reproducible.
    """
    from make_captchas import DEFAULT_CHARSET, DEFAULT_LENGTHS, file_names  # the captcha package, only here

    names = {f"{stem}.png" for _, stem, _, _ in file_names(count, 0, DEFAULT_CHARSET, DEFAULT_LENGTHS)}
    found = [(path, label) for path, label in list_labelled_images(SHIPPED) if path.name in names]
    if len(found) != count:
        raise SystemExit(f"error: {SHIPPED} lacks {count - len(found)} of the first {count:,} images of "
                         "make_captchas.py --seed 0")
    return found


def linked_folder(folder: Path, files: list[tuple[Path, str]]) -> Path:
    """A folder of symbolic links named `<label>_<i><ext>` to the given files."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, (path, label) in enumerate(files):
        (folder / f"{label}_{i}{path.suffix.lower()}").symlink_to(path.resolve())
    return folder


def split_folders(source: Path, train_fraction: float, prefix: Path) -> tuple[Path, Path]:
    """A seeded (seed 0) split of a labelled folder by file into `<prefix>_train` and `<prefix>_test` links."""
    items = list_labelled_images(source)
    order = random.Random(0).sample(range(len(items)), len(items))
    cut = round(train_fraction * len(items))
    train = linked_folder(prefix.with_name(prefix.name + "_train"), [items[i] for i in order[:cut]])
    test = linked_folder(prefix.with_name(prefix.name + "_test"), [items[i] for i in order[cut:]])
    return train, test


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
