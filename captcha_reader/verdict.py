"""An honest reading of a finished run: how sure the validation score is, which characters it
confuses, and whether the run learned anything at all.

TensorFlow-free: training prints these lines, and anything that reads a report can reuse them.
"""

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from captcha_reader.base import WIDTH_PER_TIME_STEP, ModelSpec
from captcha_reader.decoding import score
from captcha_reader.settings import DEFAULT_IMG_HEIGHT

# Two-sided 95% normal quantile, for the Wilson score interval.
Z_95 = 1.959964
# Below this validation accuracy, with (almost) one reading for every image or most characters
# wrong, a run learned nothing. Format-aware decoding spells noise at the right length, so the
# character error rate catches what the count of distinct readings misses.
NOTHING_LEARNED_BELOW = 0.05
CHANCE_CER = 0.75
# The text should span at least this fraction of the width of the frame the model sees.
MIN_INK_WIDTH = 0.3


@dataclass(frozen=True)
class Verdict:
    """What a run's validation says, in lines a user can act on."""

    learned_nothing: bool
    lines: tuple[str, ...]


def wilson_interval(right: int, total: int) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score interval)."""
    if total == 0:
        return 0.0, 1.0
    p = right / total
    centre = (p + Z_95 ** 2 / (2 * total)) / (1 + Z_95 ** 2 / total)
    half = Z_95 * math.sqrt(p * (1 - p) / total + Z_95 ** 2 / (4 * total ** 2)) / (1 + Z_95 ** 2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def confusions(truths: list[str], readings: list[str]) -> Counter:
    """(true character, read character) pairs of same-length misreads; ('length N', 'M') for wrong lengths."""
    pairs: Counter = Counter()
    for truth, reading in zip(truths, readings):
        if truth == reading:
            continue
        if len(truth) != len(reading):
            pairs[(f"length {len(truth)}", str(len(reading)))] += 1  # printed "length 4->5"
            continue
        pairs.update((t, r) for t, r in zip(truth, reading) if t != r)
    return pairs


def ink_width(images: np.ndarray) -> float:
    """Median fraction of the frame's width between the first and last column with dark pixels."""
    if len(images) == 0:
        return 1.0
    dark = images < np.median(images, axis=(1, 2), keepdims=True) - 0.25
    columns = dark.any(axis=1)
    spans = [(np.flatnonzero(row)[-1] - np.flatnonzero(row)[0] + 1) / row.size if row.any() else 0.0
             for row in columns]
    return float(np.median(spans))


def likely_causes(labels: list[str], images: np.ndarray, spec: ModelSpec) -> list[str]:
    """What a run that learned nothing can check about its data."""
    causes = []
    if len(set(labels)) == 1:
        causes.append(f"every image has the same label {labels[0]!r}: are the labels in the file names?")
    mean_length = float(np.mean([len(label) for label in labels])) if labels else 0.0
    if mean_length > 10 or len(spec.charset) > 40:
        causes.append(f"labels average {mean_length:.1f} characters from {len(spec.charset)} different ones: "
                      "are the file names labels, or ids? (labels.csv can give the labels)")
    steps_per_char = spec.time_steps / max(1.0, mean_length)
    if steps_per_char < 2:
        causes.append(f"{spec.time_steps} time steps for labels of {mean_length:.1f} characters: "
                      f"try --img-width {WIDTH_PER_TIME_STEP * math.ceil(3 * mean_length)} or more")
    width = ink_width(images)
    if width < MIN_INK_WIDTH:
        causes.append(f"the text fills about {width:.0%} of the frame's width: crop the images to the text")
    if spec.height < DEFAULT_IMG_HEIGHT // 2:
        causes.append(f"the input is {spec.height} pixels high: try --img-height {DEFAULT_IMG_HEIGHT}")
    return causes or ["none that these checks can see (geometry, frame, labels): try more epochs (--epochs)"
                      " or a smaller --learning-rate"]


def judge_validation(truths: list[str], readings: list[str], images: np.ndarray, spec: ModelSpec) -> Verdict:
    """The lines to print after training, and whether the run learned nothing."""
    total = len(truths)
    if total == 0:
        return Verdict(False, ("no validation images: nothing tells how well this model reads",))
    right = sum(t == r for t, r in zip(truths, readings))
    low, high = wilson_interval(right, total)
    lines = [f"validation: {right} of {total} read right; 95% interval {low:.1%} to {high:.1%}"]
    if high - low > 0.02:
        lines.append(f"warning: {total} validation images cannot tell {high:.1%} from {low:.1%}; "
                     "test on more images (--test-dir) before trusting this score")
    pairs = confusions(truths, readings)
    if pairs:
        shown = ", ".join(f"{t}->{r} x{n}" for (t, r), n in pairs.most_common(8))
        lines.append(f"most confused (truth->read): {shown}")
    distinct = len(set(readings))
    cer = score(truths, readings)[1]
    learned_nothing = right / total < NOTHING_LEARNED_BELOW and (distinct <= max(1, total // 20) or cer >= CHANCE_CER)
    if learned_nothing:
        lines.append(f"this run learned nothing: {right / total:.1%} right, {cer:.0%} of the characters wrong, "
                     f"{distinct} distinct reading(s) for {total} images ({readings[0]!r} ...)")
        lines += [f"likely cause: {cause}" for cause in likely_causes(truths, images, spec)]
    return Verdict(learned_nothing, tuple(lines))
