"""What early stopping should watch: each candidate monitor's kept epoch, read on fresh test images.

    python benchmarks/early_stopping.py --datasets-dir ../shared/datasets    # 100 minutes on 2 cores shared with other runs
    python benchmarks/early_stopping.py --quick --out /tmp/es/early_stopping.json   # a smoke run of the harness
    python benchmarks/early_stopping.py --replay benchmarks/results/early_stopping.json   # the rules again, no training

Each dataset trains once with the default recipe and seed, to the last planned epoch (no early
stopping), and the test set is read after every epoch with the weights early stopping would keep
(the averaged ones). Each monitor is then replayed on that run's validation scores with the
default patience (and the loss once more with twice that patience): the epoch it keeps (and the
one it stops at) is what the default run would have given with that rule, since training up to
there does not depend on the rule.
Writes benchmarks/results/early_stopping.json and prints a table.
"""

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Callable

from common import (ROOT, TEST_SEED, current_commit, first_shipped_images, generate, linked_folder, load_results,
                    machine, refuse_committed_output, save_results, split_folders)
from training_jobs import spawn

from captcha_reader.settings import DEFAULT_SEED

HARD_TRAIN_SEED = 21  # as in run.py's datasets suite

# A monitor orders epochs: the smallest key is the best. Ties in the reading scores are common on
# small validation sets, so those fall back on the loss.
MONITORS: dict[str, Callable[[dict], tuple]] = {
    "val_loss": lambda epoch: (epoch["val_loss"],),
    "val_cer, then val_loss": lambda epoch: (epoch["val_cer"], epoch["val_loss"]),
    "val_seq_acc, then val_loss": lambda epoch: (-epoch["val_seq_acc"], epoch["val_loss"]),
}
# The rules replayed: a monitor and a multiple of the run's patience (the run records the patience
# of the plan it was trained with).
RULES = {**{name: (name, 1) for name in MONITORS}, "val_loss, patience x2": ("val_loss", 2)}


def replay(epochs: list[dict], key: Callable[[dict], tuple], patience: int) -> tuple[int, int]:
    """(kept epoch, last epoch run), counted from 0, as Keras' EarlyStopping would end this run with `key`."""
    best, kept, waited = key(epochs[0]), 0, 0
    for index, epoch in enumerate(epochs[1:], start=1):
        if key(epoch) < best:
            best, kept, waited = key(epoch), index, 0
            continue
        waited += 1
        if waited >= patience:
            return kept, index
    return kept, len(epochs) - 1


def datasets(shared: Path, work: Path, quick: bool) -> dict[str, Callable[[], tuple[Path, Path]]]:
    """What makes the (train, test) folders of each dataset: the datasets suite's splits and sizes."""
    if quick:
        return {"shipped, 64": lambda: (generate(work / "quick_train", 64, 0),
                                        generate(work / "quick_test", 16, TEST_SEED))}

    def fresh() -> Path:
        """The 1,000 fresh shipped-family test images."""
        return generate(work / f"test_{TEST_SEED}", 1000, TEST_SEED)

    def hard(folder: str, count: int, seed: int) -> Path:
        """A folder of the hard family."""
        return generate(work / folder, count, seed, "--style", "hard", tool="make_diverse_captchas.py")

    # The first 8,000 shipped images: 7,200 training images now plan 14 epochs; the committed run had 15.
    return {
        "shipped, 8,000": lambda: (linked_folder(work / "shipped_8000", first_shipped_images()), fresh()),
        "shipped, 300": lambda: (linked_folder(work / "small_train", random.Random(0).sample(first_shipped_images(), 300)),
                                 fresh()),
        "henan_uni_4digit": lambda: split_folders(shared / "henan_uni_4digit", 0.8, work / "henan"),
        "captcha_images_v2": lambda: split_folders(shared / "captcha_images_v2", 0.9, work / "v2"),
        "hard, 2,000": lambda: (hard("hard_train", 2000, HARD_TRAIN_SEED), hard("hard_test", 1000, TEST_SEED)),
    }


def measure(name: str, train: Path, test: Path, work: Path, epochs: int | None) -> dict:
    """One run to its last planned epoch, and each monitor replayed on it."""
    slug = name.replace(",", "").replace(" ", "_")
    run = spawn({"kind": "every-epoch", "train_dir": str(train), "test_dir": str(test), "seed": DEFAULT_SEED,
                 "epochs": epochs, "work": str(work / slug)}, work / f"{slug}.log")
    return replay_rules(run)


def replay_rules(run: dict) -> dict:
    """The run with each rule's kept epoch, and the best test score of any epoch."""
    epochs = run["epochs"]
    run["monitors"] = {}
    for rule, (monitor, factor) in RULES.items():
        kept, last = replay(epochs, MONITORS[monitor], run["patience"] * factor)
        run["monitors"][rule] = {"kept_epoch": kept + 1, "stopped_after": last + 1, **epochs[kept]}
    run["best_test_seq_acc_of_any_epoch"] = max(epoch["test_seq_acc"] for epoch in epochs)
    return run


def print_table(results: dict) -> None:
    """Test accuracy of the epoch each monitor keeps, per dataset."""
    print("\ntest sequence accuracy of the kept epoch (kept epoch / epochs run)")
    print(f"{'dataset':20s}" + "".join(f"{rule:>30s}" for rule in RULES) + f"{'best epoch':>12s}")
    for name, run in results["datasets"].items():
        cells = "".join(f"{row['test_seq_acc']:>19.2%} ({row['kept_epoch']:>3d}/{row['stopped_after']:>3d})"
                        for row in run["monitors"].values())
        print(f"{name:20s}{cells}{run['best_test_seq_acc_of_any_epoch']:>12.2%}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets",
                        help="folder holding henan_uni_4digit and captcha_images_v2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "early_stopping.json")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "early_stopping")
    parser.add_argument("--only", action="append", help="a dataset name as in the table (names hold commas: "
                                                        "repeat --only for several)")
    parser.add_argument("--quick", action="store_true", help="a tiny generated set, the harness only")
    parser.add_argument("--replay", type=Path, help="replay the rules on the runs of this results file (rewritten)")
    args = parser.parse_args(argv)
    refuse_committed_output(args.out.parent, args.quick)
    return args


def kept_runs(previous: dict) -> dict:
    """The runs of an earlier results file, each with the commit and machine it was measured on."""
    return {name: {"commit": previous.get("commit"), "machine": previous.get("machine"), **run}
            for name, run in previous.get("datasets", {}).items()}


def main(argv: list[str] | None = None) -> int:
    """Run each dataset, replay the monitors, write the JSON and print the table."""
    args = parse_args(argv)
    if args.replay:
        results = json.loads(args.replay.read_text())
        results["datasets"] = {name: replay_rules(run) for name, run in results["datasets"].items()}
        save_results(args.replay, results)
        print_table(results)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    makers = datasets(args.datasets_dir, args.work, args.quick)
    unknown = set(args.only or ()) - set(makers)
    if unknown:
        raise SystemExit(f"error: no dataset {', '.join(sorted(unknown))}; the names: {'; '.join(makers)}")
    results = {"commit": current_commit(), "machine": machine(), "seed": DEFAULT_SEED, "datasets": {}}
    if args.only:
        results["datasets"] = kept_runs(load_results(args.out))
    for name, make_folders in makers.items():
        if args.only and name not in args.only:
            continue
        train, test = make_folders()
        results["datasets"][name] = {**measure(name, train, test, args.work, 4 if args.quick else None),
                                     "commit": results["commit"], "machine": results["machine"]}
        print(name, {m: r["test_seq_acc"] for m, r in results["datasets"][name]["monitors"].items()}, flush=True)
    save_results(args.out, results)
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
