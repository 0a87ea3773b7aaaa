"""Hostile inputs: time and peak memory of each reader on image bombs and bloated model files.

    python benchmarks/hostile_inputs.py [--model model/ocr_captcha.keras] [--out benchmarks/results/hostile_inputs.json]
    python benchmarks/hostile_inputs.py --quick      # smaller bombs; writes only into a temporary folder

Every measurement runs in a fresh process; its peak resident memory comes from os.wait4
(ru_maxrss of that process alone). The reference row of each reader reads test.png in
the same way, so "over reference" is what the hostile input cost on top of starting the
reader (TensorFlow alone takes about 550 MB). `--repo DIR` runs another checkout's code
(for example the commit before the fixes) on the same inputs.
"""

import argparse
import io
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "hostile_inputs.json"
BUDGET_MB = 300

SAVEDMODEL_SCRIPT = """
import sys, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
data = open(sys.argv[2], "rb").read()
try:
    print(serve(image_bytes=tf.constant([data]))["text"].numpy()[0].decode())
except tf.errors.InvalidArgumentError as error:
    reasons = [line for line in error.message.splitlines() if "assertion failed" in line or "Invalid" in line]
    print("refused:", (reasons or error.message.splitlines())[0].strip()[:150])
"""


def png(width: int, height: int, channels: int) -> bytes:
    """A real, decodable PNG of one colour (8-bit grey, RGB or RGBA), compressed row by row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    compressor = zlib.compressobj(9)
    row = b"\0" + b"\xff" * (width * channels)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def webp(width: int, height: int) -> bytes:
    """A small lossless WebP of one colour."""
    from PIL import Image
    out = io.BytesIO()
    Image.new("L", (width, height), 255).save(out, format="WEBP", lossless=True)
    return out.getvalue()


def ico_holding(png_data: bytes) -> bytes:
    """An ICO file whose one icon is the given PNG (Pillow decodes it while opening the ICO)."""
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png_data), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png_data


def bloated_model(source: Path, target: Path, members: list[tuple[str, int]]) -> Path:
    """A copy of a .keras archive with extra members of spaces that inflate to the given sizes."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            data = original.read(item)
            if item.filename == "config.json" and any(name == "config.json" for name, _ in members):
                size = dict(members)["config.json"]
                config = json.loads(data)
                config["padding"] = ""
                data = json.dumps(config).encode()
                with copy.open("config.json", "w") as member:  # valid JSON: the padding string, then the rest
                    head, tail = data.split(b'"padding": ""')
                    member.write(head + b'"padding": "')
                    for _ in range(size // 2**20):
                        member.write(b" " * 2**20)
                    member.write(b'"' + tail)
                continue
            copy.writestr(item.filename, data)
        for name, size in members:
            if name == "config.json":
                continue
            with copy.open(name, "w") as member:
                for _ in range(size // 2**20):
                    member.write(b" " * 2**20)
    return target


def measured(command: list[str], cwd: Path) -> dict:
    """Run a command in its own process: outcome line, seconds, and that process's peak memory."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err,
                                   env={**os.environ, "PYTHONPATH": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "3"})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    errors = [line for line in (stdout + stderr).splitlines() if line.startswith(("error:", "refused", "Traceback"))]
    outcome = errors[0] if errors else f"read {stdout.strip().splitlines()[-1] if stdout.strip() else ''!r}"
    return {"exit": os.waitstatus_to_exitcode(status), "seconds": round(seconds, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "outcome": outcome[:110]}


def make_inputs(folder: Path, quick: bool, model: Path) -> dict[str, Path]:
    """Write the hostile inputs (and test.png as the reference) into `folder`."""
    big = 3000 if quick else 12000
    inputs = {
        "reference: test.png": ROOT / "test.png",
        f"PNG {big}x{big} grey ({{size}})": png(big, big, 1),
        "PNG 4200x4200 RGBA ({size})": png(4200, 4200, 4),
        "PNG 1024x1024 RGBA, at the graph limit ({size})": png(1024, 1024, 4),
        "WebP 6000x6000 ({size})": webp(6000, 6000),
        f"ICO holding a {big}x{big} PNG, named .png ({{size}})": ico_holding(png(big, big, 1)),
    }
    paths = {}
    for index, (name, data) in enumerate(inputs.items()):
        if isinstance(data, Path):
            paths[name] = data
            continue
        path = folder / f"input{index}.{'webp' if name.startswith('WebP') else 'png'}"
        path.write_bytes(data)
        paths[name.format(size=f"{len(data):,} bytes")] = path
    config_size = 64 * 2**20 if quick else 2**30
    asset_size = 32 * 2**20 if quick else 250 * 2**20
    paths[f"model: config.json inflating to {config_size // 2**20} MiB"] = bloated_model(
        model, folder / "config_bomb.keras", [("config.json", config_size)])
    paths[f"model: three assets of {asset_size // 2**20} MiB"] = bloated_model(
        model, folder / "assets_bomb.keras", [(f"assets/blob{i}.bin", asset_size) for i in range(3)])
    return paths


def exports(model: Path, folder: Path, repo: Path) -> tuple[Path, Path]:
    """The SavedModel and ONNX exports of `model`, made with `repo`'s code."""
    savedmodel, onnx = folder / "serving", folder / "model.onnx"
    for flag, target in (("--export-savedmodel", savedmodel), ("--export-lite", onnx)):
        subprocess.run([sys.executable, str(repo / "ocr_captcha.py"), flag, str(target), "--model", str(model)],
                       cwd=repo, check=True, capture_output=True)
    return savedmodel / "1", onnx


def main() -> int:
    """Measure every reader on every hostile input and write the table and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "model" / "ocr_captcha.keras"))
    parser.add_argument("--repo", default=str(ROOT), help="checkout whose code is measured (default: this one)")
    parser.add_argument("--quick", action="store_true", help="smaller bombs; results go to a temporary folder")
    parser.add_argument("--out", help=f"JSON results (default: {DEFAULT_OUT.relative_to(ROOT)}, or a temporary file"
                                      " with --quick)")
    args = parser.parse_args()
    repo, model = Path(args.repo).resolve(), Path(args.model).resolve()
    work = Path(tempfile.mkdtemp(prefix="hostile_"))
    out = Path(args.out) if args.out else (work / "hostile_inputs.json" if args.quick else DEFAULT_OUT)
    savedmodel, onnx = exports(model, work, repo)
    inputs = make_inputs(work, args.quick, model)
    readers = {
        "SavedModel": lambda path: [sys.executable, "-c", SAVEDMODEL_SCRIPT, str(savedmodel), str(path)],
        "predict_example.py (Keras)": lambda path: [sys.executable, str(repo / "predict_example.py"), str(path),
                                                    "--model", str(model)],
        "predict_example.py (ONNX)": lambda path: [sys.executable, str(repo / "predict_example.py"), str(path),
                                                   "--model", str(onnx)],
    }
    rows = []
    for name, path in inputs.items():
        if name.startswith("model:"):
            command = [sys.executable, str(repo / "predict_example.py"), str(ROOT / "test.png"), "--model", str(path)]
            rows.append({"input": name, "reader": "predict_example.py (Keras)", **measured(command, repo)})
            continue
        for reader, command in readers.items():
            rows.append({"input": name, "reader": reader, **measured(command(path), repo)})
    reference = {row["reader"]: row["peak_rss_mb"] for row in rows if row["input"].startswith("reference")}
    for row in rows:
        row["over_reference_mb"] = round(row["peak_rss_mb"] - reference[row["reader"]], 1)
    print(f"{'input':55} {'reader':28} {'exit':>4} {'s':>6} {'peak MB':>8} {'over ref':>8}  outcome")
    for row in rows:
        print(f"{row['input'][:55]:55} {row['reader']:28} {row['exit']:>4} {row['seconds']:>6.1f} "
              f"{row['peak_rss_mb']:>8.0f} {row['over_reference_mb']:>8.0f}  {row['outcome'][:70]}")
    worst = max(row["over_reference_mb"] for row in rows)
    print(f"largest cost over the reader's reference: {worst:.0f} MB (budget {BUDGET_MB} MB)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repo": str(repo), "model": str(model), "quick": args.quick,
                               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "budget_mb": BUDGET_MB, "largest_over_reference_mb": worst, "rows": rows},
                              indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
