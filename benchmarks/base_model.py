"""The shipped base model: zero-shot reading against ddddocr, and few-shot fine-tuning against training from scratch.

    python benchmarks/base_model.py                        # about 40 minutes on 2 cores
    python benchmarks/base_model.py --quick --out /tmp/bm/base_model.json   # a smoke run of the harness
    python benchmarks/base_model.py --families heldout-plain --out benchmarks/results/base_model_plain.json
    python benchmarks/base_model.py --families hard hard-b --out benchmarks/results/base_model_hard.json

Test sets, 1,000 fresh images each (seed 2026): the shipped family (tools/make_captchas.py) and the
held-out styles heldout-a, heldout-b and heldout-plain of tools/make_diverse_captchas.py, whose fonts and
effects the base model never saw, drawn from LETTERS (and once more from all 62 characters, scored ignoring case
too). Zero-shot: the base model as shipped, reading with its own format (any of its 62 characters,
3 to 8 of them) and with the family's (`--charset`/`--length`, as a user would say it); ddddocr
(default and beta models) in the same run, exact and ignoring case, since it reads one case.
Few-shot: the first 100 and 300 images of another seed of each held-out style, trained with
`ocr_captcha.py --init-from base` and from scratch (`--init-from scratch`), read on the test set.
Speed: the base model against today's default network at the shipped geometry, batches of 256.
Writes benchmarks/results/base_model.json and prints a table.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from common import (ROOT, TEST_SEED, current_commit, generate, machine, measure_inference, refuse_committed_output,
                    save_results)
from make_diverse_captchas import STYLES

from captcha_reader.base import ModelSpec
from captcha_reader.decoding import TextFormat, score
from captcha_reader.labels import label_from_filename, list_images
from captcha_reader.readers import open_reader
from captcha_reader.reading import BASE_MODEL
from captcha_reader.settings import SCRATCH

POOL_SEED = 11
FEW_SHOT = (100, 300)
# Lower-case letters and digits without the pairs no reader can tell apart in these styles, whose
# glyphs vary in size (o/O, s/S, x/X, ...; 0/o, 1/l/I): what many real captchas draw from.
LETTERS = "abcdefghkmnpqrstuvwxyz23456789"


class Family(NamedTuple):
    """A test family: its generator and options, and the format its user would give the reader."""

    tool: str
    options: tuple[str, ...]
    charset: str | None
    lengths: str


FAMILIES = {
    "shipped": Family("make_captchas.py", (), "0123456789", "4"),
    "heldout-a": Family("make_diverse_captchas.py", ("--style", "heldout-a", "--charset", LETTERS), LETTERS, "4-7"),
    "heldout-b": Family("make_diverse_captchas.py", ("--style", "heldout-b", "--charset", LETTERS), LETTERS, "4-7"),
    "heldout-plain": Family("make_diverse_captchas.py", ("--style", "heldout-plain", "--charset", LETTERS), LETTERS,
                            "4-7"),
    # The styles with all 62 characters: exact case is often unknowable, so read ignoring case too.
    "heldout-a, 62 characters": Family("make_diverse_captchas.py", ("--style", "heldout-a"), None, "4-7"),
    "heldout-b, 62 characters": Family("make_diverse_captchas.py", ("--style", "heldout-b"), None, "4-7"),
    # The hard families of the datasets suite (the same 1,000 test images): zero-shot only.
    "hard": Family("make_diverse_captchas.py", ("--style", "hard"), STYLES["hard"].charset, "4-5"),
    "hard-b": Family("make_diverse_captchas.py", ("--style", "hard-b"), STYLES["hard-b"].charset, "4-5"),
}
FEW_SHOT_FAMILIES = ("heldout-a", "heldout-b", "heldout-plain")


def draw(family: str, folder: Path, count: int, seed: int) -> Path:
    """A folder of `count` images of a family, drawn once."""
    return generate(folder, count, seed, *FAMILIES[family].options, tool=FAMILIES[family].tool)


def accuracy(truths: list[str], texts: list[str]) -> dict:
    """Sequence accuracy exact and ignoring case, and the character error rate."""
    exact, cer = score(truths, texts)
    folded, _ = score([t.lower() for t in truths], [t.lower() for t in texts])
    return {"seq_acc": round(exact, 4), "seq_acc_ignoring_case": round(folded, 4), "cer": round(cer, 4)}


def ddddocr_readings(files: list[Path]) -> dict[str, list[str]]:
    """ddddocr's default and beta readings of the files."""
    import ddddocr

    readings = {}
    for name, beta in (("ddddocr", False), ("ddddocr beta", True)):
        reader = ddddocr.DdddOcr(beta=beta, show_ad=False)
        readings[name] = [reader.classification(path.read_bytes()) for path in files]
    return readings


def zero_shot(tests: dict[str, Path]) -> dict:
    """The base model and ddddocr on each test set."""
    base = open_reader(BASE_MODEL)
    rows = {}
    for family, folder in tests.items():
        files = list_images(folder)
        truths = [label_from_filename(p) for p in files]
        charset, length = FAMILIES[family].charset, FAMILIES[family].lengths
        batch = base.preprocess(files)
        rows[family] = {
            "base model": accuracy(truths, [r.text for r in base.read_arrays(batch)]),
            "base model, family's format": accuracy(
                truths, [r.text for r in base.read_arrays(batch, text_format=TextFormat.parse(charset, length))]),
            **{name: accuracy(truths, texts) for name, texts in ddddocr_readings(files).items()},
        }
    return rows


def train(data: Path, model: Path, init_from: str) -> float:
    """Train with ocr_captcha.py as a user would; returns the seconds it took."""
    command = [sys.executable, "ocr_captcha.py", "--data-dir", str(data), "--model", str(model), "--verbose", "0",
               "--init-from", init_from]
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return round(time.monotonic() - started, 1)


def few_shot(tests: dict[str, Path], work: Path, sizes: tuple[int, ...]) -> dict:
    """Fine-tuned from the base model and trained from scratch on the first N images of another seed."""
    rows = {}
    for family in [family for family in FEW_SHOT_FAMILIES if family in tests]:
        files = list_images(tests[family])
        truths = [label_from_filename(p) for p in files]
        for size in sizes:
            data = draw(family, work / f"{family}_pool_{size}", size, POOL_SEED)
            for start in ("base", SCRATCH):
                model = work / f"{family}_{size}_{start}" / "model.keras"
                seconds = train(data, model, start)
                texts = [r.text for r in open_reader(model).read(files)]
                row = {"labels": size, "start": start, "train_s": seconds, **accuracy(truths, texts)}
                rows[f"{family} {size} {row['start']}"] = row
                print(f"few-shot {family} {size} from {row['start']}: {row['seq_acc']:.2%} ({seconds:.0f} s)", flush=True)
    return rows


def speed(test: Path) -> dict:
    """Batched images/s and latency of the base model and today's default network: medians of 5 alternating rounds."""
    from captcha_reader.model import KerasReader, build_model

    files = list_images(test)
    readers = {"default network 48x128": KerasReader(build_model(ModelSpec("0123456789", 48, 128, 4, 4))),
               "base model 48x160": open_reader(BASE_MODEL)}
    speeds: dict[str, list[dict]] = {name: [] for name in readers}
    for _ in range(5):  # alternate, so that both see the same machine load
        for name, reader in readers.items():
            speeds[name].append(measure_inference(reader, files))
    rows = {name: {key: statistics.median(run[key] for run in runs) for key in ("images_per_s", "latency_ms")}
            for name, runs in speeds.items()}
    rows["base / default images per s"] = round(rows["base model 48x160"]["images_per_s"]
                                                / rows["default network 48x128"]["images_per_s"], 3)
    return rows


def print_table(results: dict) -> None:
    """The zero-shot and few-shot tables."""
    print("\nzero-shot (1,000 fresh images each): sequence accuracy exact / ignoring case")
    for family, row in results["zero_shot"].items():
        cells = "  ".join(f"{name}: {r['seq_acc']:.1%} / {r['seq_acc_ignoring_case']:.1%}" for name, r in row.items())
        print(f"  {family:10s} {cells}")
    print("\nfew-shot: sequence accuracy on the test set")
    for name, row in results["few_shot"].items():
        print(f"  {name:28s} {row['seq_acc']:.1%} (ignoring case {row['seq_acc_ignoring_case']:.1%}), {row['train_s']:.0f} s")
    print(f"\nspeed: base / default network = {results['speed']['base / default images per s']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "base_model.json")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "base_model")
    parser.add_argument("--quick", action="store_true", help="tiny sets, the harness only")
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=sorted(FAMILIES),
                        help="test families (default all; the shipped family's set times the speed either way)")
    args = parser.parse_args(argv)
    refuse_committed_output(args.out.parent, args.quick)
    return args


def main(argv: list[str] | None = None) -> int:
    """Draw the sets, measure, write the JSON and print the tables."""
    args = parse_args(argv)
    if not BASE_MODEL.is_file():
        print(f"error: no base model at {BASE_MODEL}; make it with python tools/train_base_model.py", file=sys.stderr)
        return 1
    count, sizes = (40, (20,)) if args.quick else (1000, FEW_SHOT)
    tests = {family: draw(family, args.work / f"{family}_test_{TEST_SEED}".replace(" ", "_").replace(",", ""), count,
                          TEST_SEED) for family in sorted({"shipped", *args.families})}
    results = {"commit": current_commit(), "machine": machine(), "base_model": json.loads(
        BASE_MODEL.with_suffix(".json").read_text()), "test_images": count, "test_seed": TEST_SEED,
        "pool_seed": POOL_SEED}
    results["zero_shot"] = zero_shot({family: tests[family] for family in args.families})
    results["speed"] = speed(tests["shipped"])
    results["few_shot"] = few_shot(tests, args.work, sizes)
    save_results(args.out, results)
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
