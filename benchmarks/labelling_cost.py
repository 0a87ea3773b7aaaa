"""What labelling a new captcha family costs with the labelling page's loop, against hand labelling.

    python benchmarks/labelling_cost.py                       # shipped family and one drawn differently
    python benchmarks/labelling_cost.py --quick --out /tmp/lc/lc.json   # a smoke run of the harness (tiny, minutes)
    python benchmarks/labelling_cost.py --families digits56 --base model/ocr_captcha.keras --order confident \
        --out benchmarks/results/labelling_cost_base.json      # starting from a model of another family

A simulated person labels a generated pool whose true labels hide behind opaque file names,
through the page's own functions (LabelStore, suggest, labels_format, order_queue, training_command):
a right suggestion is accepted (1 keystroke, 1.5 s), a wrong one or none is typed (its length
+ 1 keystrokes, 4 s). As on the page, suggestions take the format of the labels so far, and
the waiting images are read again and reordered when that format changes; the page does that
in the background while the person goes on, the simulation before the next answer. The model retrains
after 100, 200, 400, 800, ... labels, fine-tuning the last model, until it reads at least 99% of
1,000 fresh images of the family.
Hand labelling types every label and trains from scratch; it is measured at the doubling
sizes around the assisted count until 99%, then counted to the smallest size that reached it.
Writes benchmarks/results/labelling_cost.json and prints a table.
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from common import ROOT, TEST_SEED, current_commit, generate, refuse_committed_output

from captcha_reader.base import ModelSpec
from captcha_reader.decoding import Reading, TextFormat, score
from captcha_reader.label_loop import (
    LabelStore,
    labels_format,
    onnx_for,
    order_queue,
    package_root,
    suggest,
    training_command,
)
from captcha_reader.labels import label_from_filename, list_images
from captcha_reader.lite import load_lite_reader
from captcha_reader.readers import open_reader
from captcha_reader.settings import SCRATCH

ACCEPT_SECONDS, TYPE_SECONDS = 1.5, 4.0
TARGET = 0.99
POOL_SEED = 31  # the images the person labels; the fresh test images are TEST_SEED
LETTERS = "abcdefghkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i or j: as many real captchas leave them out
# (generator in tools/, its options): the shipped family and families drawn differently.
FAMILIES = {
    "shipped": ("make_captchas.py", []),  # 4 digits, 160x60
    "letters": ("make_captchas.py", ["--length", "5-6", "--charset", LETTERS, "--width", "200", "--height", "64"]),
    "digits56": ("make_captchas.py", ["--length", "5-6", "--width", "200", "--height", "64"]),
    # A style the base model never saw (fonts, grids, hollow glyphs, circles, salt and pepper).
    "letters-a": ("make_diverse_captchas.py", ["--style", "heldout-a", "--length", "5-6", "--charset", LETTERS]),
    # A plainer style the base model never saw either (other fonts, thin sine curves): a site's own captcha.
    "letters-plain": ("make_diverse_captchas.py", ["--style", "heldout-plain", "--length", "5-6", "--charset", LETTERS]),
}


def hide_labels(source: Path, pool: Path, seed: int) -> dict[str, str]:
    """Copy `source` images under opaque shuffled names into `pool`; returns the hidden truth by new name."""
    files = list_images(source)
    random.Random(seed).shuffle(files)
    pool.mkdir(parents=True)
    truth = {}
    for i, path in enumerate(files):
        name = f"img{i:05d}{path.suffix}"
        shutil.copy(path, pool / name)
        truth[name] = label_from_filename(path)
    return truth


def train(folder: Path, model: Path, init_from: Path | None, labelled: int, epochs: int | None) -> float:
    """Run the page's training command; returns its wall time in seconds."""
    started = time.perf_counter()
    command = training_command(folder, model, init_from, labelled, epochs)
    if init_from is None:  # the arms without a model start from nothing, even where training would pick the base
        command += ["--init-from", SCRATCH]
    done = subprocess.run(command, cwd=package_root(), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"training failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def test_accuracy(model: Path, test_dir: Path) -> float:
    """Sequence accuracy of the model's ONNX export on the fresh test images."""
    paths = list_images(test_dir)
    readings = load_lite_reader(model.with_suffix(".onnx")).read(paths)
    return score([label_from_filename(p) for p in paths], [r.text for r in readings])[0]


def checkpoints(first: int, limit: int):
    """100, 200, 400, ... (from `first`) up to the pool size."""
    size = first
    while size < limit:
        yield size
        size *= 2
    yield limit


class PageSuggestions(NamedTuple):
    """The page's suggestions for the waiting images, and the model and labels' format they were read with."""

    by_name: dict[str, Reading]
    spec: ModelSpec
    text_format: TextFormat | None


def read_suggestions(model: Path, store: LabelStore, work: Path) -> PageSuggestions:
    """Read the waiting images as the page does: through its ONNX export, in the format of the labels so far."""
    reader = open_reader(onnx_for(model, work))
    text_format = labels_format(store.labels(), reader.spec)
    by_name: dict[str, Reading] = {}
    for batch in suggest(reader, [store.folder / name for name in store.waiting()], text_format):
        by_name.update(batch.readings)
    return PageSuggestions(by_name, reader.spec, text_format)


def assisted(pool: Path, truth: dict[str, str], test_dir: Path, work: Path, order: str, first: int,
             epochs: int | None, base: Path | None) -> dict:
    """The page's loop with a simulated person, from `base` if given; stops at TARGET or an exhausted pool."""
    store = LabelStore(pool)
    store.open_for_labelling()
    model, previous = work / "assisted" / "model.keras", base
    model.parent.mkdir(parents=True)
    started = time.perf_counter()
    suggestions = read_suggestions(base, store, model.parent) if base else None
    typed = keystrokes = labelled = 0
    human, machine = 0.0, time.perf_counter() - started
    rounds = []
    for target in checkpoints(first, len(truth)):
        queue = order_queue(store.waiting(), suggestions.by_name if suggestions else {}, order)
        while labelled < target:
            name = queue.pop(0)
            suggestion = suggestions.by_name.get(name) if suggestions else None
            right = suggestion is not None and suggestion.text == truth[name]
            typed += not right
            keystrokes += 1 if right else len(truth[name]) + 1
            human += ACCEPT_SECONDS if right else TYPE_SECONDS
            store.answer(name, truth[name])
            labelled += 1
            if suggestions and labels_format(store.labels(), suggestions.spec) != suggestions.text_format:
                # As on the page: the labels' format changed, so the waiting images are read again and reordered.
                started = time.perf_counter()
                suggestions = read_suggestions(previous, store, model.parent)
                machine += time.perf_counter() - started
                queue = order_queue(store.waiting(), suggestions.by_name, order)
        machine += train(pool, model, previous, labelled, epochs)
        previous = model
        started = time.perf_counter()
        accuracy = test_accuracy(model, test_dir)
        suggestions = read_suggestions(model, store, model.parent)
        machine += time.perf_counter() - started
        rounds.append({"labelled": labelled, "typed": typed, "keystrokes": keystrokes,
                       "human_s": round(human, 1), "machine_s": round(machine, 1), "test_acc": accuracy})
        print(f"  assisted: {rounds[-1]}", flush=True)
        if accuracy >= TARGET:
            break
    return {"rounds": rounds, **rounds[-1], "reached": rounds[-1]["test_acc"] >= TARGET}


def hand(pool: Path, truth: dict[str, str], test_dir: Path, work: Path, start: int, epochs: int | None) -> dict:
    """Hand labelling: every label typed, a model from scratch; the smallest doubling size that reaches TARGET."""
    names = sorted(truth)
    tried: dict[int, dict] = {}

    def attempt(size: int) -> dict:
        folder = work / f"hand_{size}"
        folder.mkdir(parents=True)
        for name in names[:size]:
            shutil.copy(pool / name, folder / name)
        (folder / "labels.csv").write_text("".join(f"{name},{truth[name]}\n" for name in names[:size]))
        model = work / f"hand_{size}_model" / "model.keras"
        model.parent.mkdir()
        seconds = train(folder, model, None, size, epochs)
        result = {"labelled": size, "typed": size, "keystrokes": sum(len(truth[n]) + 1 for n in names[:size]),
                  "human_s": TYPE_SECONDS * size, "machine_s": round(seconds, 1), "test_acc": test_accuracy(model, test_dir)}
        print(f"  hand: {result}", flush=True)
        return result

    size = min(start, len(names))
    tried[size] = attempt(size)
    while tried[size]["test_acc"] < TARGET and size < len(names):  # up until it reaches
        size = min(2 * size, len(names))
        tried[size] = attempt(size)
    while tried[size]["test_acc"] >= TARGET and size // 2 >= 100 and size // 2 not in tried:  # down while it holds
        tried[size // 2] = attempt(size // 2)
        if tried[size // 2]["test_acc"] >= TARGET:
            size //= 2
    best = tried[size]
    return {"tried": sorted(tried.values(), key=lambda r: r["labelled"]), **best,
            "machine_s": round(sum(r["machine_s"] for r in tried.values()), 1), "reached": best["test_acc"] >= TARGET}


def run_family(name: str, family: tuple[str, list[str]], work: Path, pool_size: int, test_size: int, order: str,
               first: int, epochs: int | None, base: Path | None, with_hand: bool, seeds: tuple[int, int]) -> dict:
    """Both arms on one family."""
    print(f"{name}: pool {pool_size}, test {test_size}", flush=True)
    tool, extra = family
    pool_seed, test_seed = seeds
    source = generate(work / f"{name}_source", pool_size, pool_seed, *extra, tool=tool)
    test_dir = generate(work / f"{name}_test", test_size, test_seed, *extra, tool=tool)
    pool = work / f"{name}_pool"
    truth = hide_labels(source, pool, seed=5)
    with_model = assisted(pool, truth, test_dir, work / f"{name}_runs", order, first, epochs, base)
    if not with_hand:
        return {"family": name, "generator": tool, "generator_options": extra, "base": str(base) if base else None,
                "assisted": with_model}
    by_hand = hand(pool, truth, test_dir, work / f"{name}_runs", with_model["labelled"], epochs)
    return {"family": name, "generator": tool, "generator_options": extra, "base": str(base) if base else None,
            "assisted": with_model, "hand": by_hand,
            "typed_ratio": round(with_model["typed"] / by_hand["typed"], 3)}


def print_table(results: list[dict]) -> None:
    """One row per family and arm."""
    print(f"\n{'family':<9} {'arm':<9} {'labelled':>8} {'typed':>6} {'keys':>6} {'human min':>9} {'machine min':>11} {'test acc':>8}")
    for family in results:
        for arm in [arm for arm in ("assisted", "hand") if arm in family]:
            r = family[arm]
            print(f"{family['family']:<9} {arm:<9} {r['labelled']:>8} {r['typed']:>6} {r['keystrokes']:>6} "
                  f"{r['human_s'] / 60:>9.1f} {r['machine_s'] / 60:>11.1f} {r['test_acc']:>8.4f}")
        if "typed_ratio" in family:
            print(f"{'':<9} typed labels, assisted / hand: {family['typed_ratio']:.1%}")


def main() -> int:
    """Run the families asked for and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny pool and 1-epoch trainings: checks the harness")
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=["shipped", "letters"])
    parser.add_argument("--order", choices=("uncertain", "confident", "name"), default="uncertain")
    parser.add_argument("--pool", type=int, default=6400, help="images the person may label")
    parser.add_argument("--base", type=Path, help="model whose suggestions come first and that the first training fine-tunes")
    parser.add_argument("--no-hand", action="store_true", help="the assisted arm only (hand labelling measured before)")
    parser.add_argument("--pool-seed", type=int, default=POOL_SEED, help="seed of the images the person labels")
    parser.add_argument("--test-seed", type=int, default=TEST_SEED, help="seed of the fresh test images")
    parser.add_argument("--work", type=Path, default=Path("/tmp/labelling_cost"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "labelling_cost.json")
    args = parser.parse_args()
    refuse_committed_output(args.out.parent, args.quick)
    shutil.rmtree(args.work, ignore_errors=True)
    pool, test, first, epochs = (60, 40, 20, 1) if args.quick else (args.pool, 1000, 100, None)
    results = [run_family(name, FAMILIES[name], args.work, pool, test, args.order, first, epochs, args.base,
                          not args.no_hand, (args.pool_seed, args.test_seed)) for name in args.families]
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"commit": current_commit(), "quick": args.quick, "order": args.order,
                                    "pool_seed": args.pool_seed, "test_seed": args.test_seed, "target": TARGET, "families": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
