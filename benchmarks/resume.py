"""Does an interrupted training end where an uninterrupted one does?

    python benchmarks/resume.py [--count 8000] [--epochs 15] [--kill-after 5]

Trains the default recipe on the first --count shipped images (in generation order) twice: once straight
through, once killed with SIGKILL after --kill-after finished epochs and run again with
the same command (which resumes from its backup). Prints both final validation
sequence accuracies and writes the comparison into benchmarks/results.json ("resume").
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import COMMITTED_RESULTS, ROOT, first_shipped_images, linked_folder, load_results, save_results


def train_command(data: Path, model: Path, epochs: int) -> list[str]:
    """The training command both runs use."""
    return [sys.executable, str(ROOT / "ocr_captcha.py"), "--data-dir", str(data), "--model", str(model),
            "--epochs", str(epochs), "--verbose", "2"]


def validation_accuracy(model: Path) -> float:
    """The validation sequence accuracy recorded in a saved model."""
    result = subprocess.run([sys.executable, str(ROOT / "predict_example.py"), "--info", "--json", "--model",
                             str(model)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["validation"]["seq_acc"]


def main() -> int:
    """Run both trainings and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--kill-after", type=int, default=5)
    parser.add_argument("--out", default=str(COMMITTED_RESULTS))
    args = parser.parse_args()
    work = Path(args.out) / "work" / "resume"
    shutil.rmtree(work, ignore_errors=True)
    data = linked_folder(work / "data", first_shipped_images(args.count))

    straight = work / "straight" / "m.keras"
    subprocess.run(train_command(data, straight, args.epochs), check=True, stdout=subprocess.DEVNULL)

    interrupted = work / "interrupted" / "m.keras"
    command = train_command(data, interrupted, args.epochs)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = interrupted.parent / "m.training"
    while True:
        done = [json.loads(p.read_text())["epoch"] for p in metadata.glob("run-*/backup/training_metadata.json")
                if p.read_text().strip()]
        if done and done[0] >= args.kill_after:
            break
        if process.poll() is not None:
            raise RuntimeError("training ended before it could be killed")
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(command, capture_output=True, text=True, check=True)
    result = {
        "images": args.count, "epochs": args.epochs, "killed_after_epoch": done[0],
        "resumed_message": "resuming from the last finished epoch" in resumed.stdout,
        "val_seq_acc_uninterrupted": validation_accuracy(straight),
        "val_seq_acc_interrupted": validation_accuracy(interrupted),
    }
    result["difference_points"] = round(100 * (result["val_seq_acc_interrupted"] - result["val_seq_acc_uninterrupted"]), 2)
    results_path = Path(args.out) / "results.json"
    results = load_results(results_path)
    results["resume"] = {"command": "python benchmarks/resume.py " + " ".join(sys.argv[1:]), **result}
    save_results(results_path, results)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
