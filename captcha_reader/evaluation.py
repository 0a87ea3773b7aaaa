"""Scoring a model on a labelled folder: sequence accuracy, character error rate, every misread, and
how accuracy rises when only the readings above a confidence count.

    python ocr_captcha.py --evaluate DIR --model PATH [--report FILE]

Works with any reader (Keras or ONNX): it needs no TensorFlow of its own.
"""

from pathlib import Path

from captcha_reader.base import printable
from captcha_reader.data import check_bad_files, labelled_items, load_images
from captcha_reader.decoding import score
from captcha_reader.files import check_writable, write_json
from captcha_reader.labels import chars_outside
from captcha_reader.reading import BaseReader

# A client that can ask the site for another captcha may answer only when the reading is sure: these bars
# show what that buys on the folder (the share of images answered, and the accuracy on those).
CONFIDENCE_BARS = (0.5, 0.8, 0.9, 0.95, 0.99)


def evaluate_folder(reader: BaseReader, folder: str | Path, report_path: Path) -> dict:
    """Read every labelled image in `folder`, print the scores and every misread, write a JSON report."""
    check_writable(report_path.parent, "the report")
    items = labelled_items(folder)
    data = load_images(items, reader.spec)
    check_bad_files(data.bad_files, len(items), folder)  # as training does: a few are skipped, many stop it
    readings = reader.read_arrays(data.images)
    charset = reader.spec.charset
    misreads = []
    for path, truth, reading in zip(data.paths, data.labels, readings):
        if reading.text != truth:
            misread = {"path": str(path), "truth": truth, "pred": reading.text, "confidence": reading.confidence}
            outside = chars_outside(truth, charset)
            if outside:
                misread["outside_charset"] = outside
            misreads.append(misread)
    seq_acc, cer = score(data.labels, [r.text for r in readings])
    outside_all = "".join(sorted(chars_outside("".join(data.labels), charset)))
    bars = by_confidence([r.text == truth for r, truth in zip(readings, data.labels)], [r.confidence for r in readings])
    report = {"n": len(data.labels), "seq_acc": seq_acc, "cer": cer, "by_confidence": bars, "misreads": misreads,
              "chars_outside_charset": outside_all, "unreadable": data.bad_files}
    for misread in misreads:
        note = f"  (not in the model's charset: {misread['outside_charset']!r})" if "outside_charset" in misread else ""
        print(f"misread {printable(misread['path'])}: truth {misread['truth']!r}, read {misread['pred']!r}, "
              f"confidence {misread['confidence']:.3f}{note}")
    print(f"{printable(str(folder))}: sequence accuracy {seq_acc:.4f}, character error rate {cer:.4f} "
          f"({len(misreads)} misreads in {len(data.labels)} images)")
    print_by_confidence(bars)
    if outside_all:
        print(f"labels use characters the model cannot read: {outside_all!r}")
    if data.bad_files:
        print(f"{len(data.bad_files)} unreadable files were skipped (listed in the report)")
    write_json(report_path, report)
    print(f"report: {report_path}")
    return report


def by_confidence(right: list[bool], confidences: list[float]) -> list[dict]:
    """For each confidence bar: the share of images read at least that sure, and the accuracy on them (or None)."""
    bars = []
    for bar in CONFIDENCE_BARS:
        answered = [ok for ok, confidence in zip(right, confidences) if confidence >= bar]
        bars.append({"min_confidence": bar, "answered": len(answered) / len(right),
                     "seq_acc": sum(answered) / len(answered) if answered else None})
    return bars


def print_by_confidence(bars: list[dict]) -> None:
    """The by_confidence rows as a small table."""
    def row(title: str, cells: list[str]) -> str:
        """One line of the table."""
        return f"{title:<34}" + "".join(f"{cell:>9}" for cell in cells)

    print(row("readings at least this sure:", [f"{bar['min_confidence']:.2f}" for bar in bars]))
    print(row("  share of the images", [f"{bar['answered']:.1%}" for bar in bars]))
    print(row("  read right, of those", ["-" if bar["seq_acc"] is None else f"{bar['seq_acc']:.2%}" for bar in bars]))
