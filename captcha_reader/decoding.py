"""CTC decoding and scoring: per-step logits in, readings (text, confidences) and error rates out.

NumPy only: every runtime (Keras, ONNX, the service) decodes with these functions.

Readings know the text format by default: a model trained on 4-character labels reads
4 characters, drawn from its charset. `TextFormat` narrows or widens that at read time.
The decoder is exact: a dynamic programme over the per-step probabilities finds the
most probable CTC path whose text has an allowed length and only allowed characters
(greedy decoding, the best class at each step, is the unconstrained special case).
"""

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from captcha_reader.base import BLANK_INDEX, ModelSpec, TextFormatError
from captcha_reader.labels import chars_outside, decode_indices, encode_label


class Reading(NamedTuple):
    """What the model read in one image."""

    text: str
    confidence: float  # probability of the decoded CTC path, in [0, 1]
    char_confidences: tuple[float, ...] = ()  # per character: its best step's probability in its run

    def as_json(self) -> dict:
        """The reading as `--json` and the service give it: text, confidence and per-character confidences."""
        return {"text": self.text, "confidence": round(float(self.confidence), 6),
                "char_confidences": [round(float(c), 6) for c in self.char_confidences]}


@dataclass(frozen=True)
class TextFormat:
    """What a reading may be: its characters and its (min, max) length; None keeps the model's own."""

    charset: str | None = None
    lengths: tuple[int, int] | None = None

    @classmethod
    def parse(cls, charset: str | None = None, length: str | None = None) -> "TextFormat":
        """A format from command-line text: a charset such as `0123456789`, a length such as `4` or `4-6`."""
        return cls(charset, parse_lengths(length) if length is not None else None)


def parse_lengths(text: str) -> tuple[int, int]:
    """`4` or `4-6` as an inclusive (min, max) length."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if match is None:
        raise TextFormatError(f"length must look like 4 or 4-6, got {text!r}")
    lengths = (int(match[1]), int(match[2] or match[1]))
    if not 1 <= lengths[0] <= lengths[1]:
        raise TextFormatError(f"length must look like 4 or 4-6 with 1 <= min <= max, got {text!r}")
    return lengths


def requested_format(charset: str | None, length: str | None, greedy: bool) -> TextFormat | None:
    """The format a reading is asked for (a charset, a length such as `4-6`); None for the model's own, or greedy."""
    if greedy and (charset is not None or length is not None):
        raise TextFormatError("greedy reads any length and character: it cannot be combined with length or charset")
    return None if charset is None and length is None else TextFormat.parse(charset, length)


def model_format(spec: ModelSpec) -> TextFormat:
    """The format of the labels the model was trained on: its charset and label lengths."""
    return TextFormat(spec.charset, (spec.min_label_length, spec.max_label_length))


def resolve_format(spec: ModelSpec, text_format: TextFormat | None) -> TextFormat:
    """`text_format` with the model's own charset and lengths where it has None, checked against the model."""
    own = model_format(spec)
    charset = own.charset if text_format is None or text_format.charset is None else text_format.charset
    low, high = own.lengths if text_format is None or text_format.lengths is None else text_format.lengths
    unknown = chars_outside(charset, spec.charset)
    if not charset or unknown:
        raise TextFormatError(f"charset {charset!r}: the model reads only {spec.charset!r}"
                              + (f" (not {unknown!r})" if unknown else ""))
    if not 1 <= low <= high:
        raise TextFormatError(f"lengths {low}-{high}: need 1 <= min <= max")
    # A blank must separate repeated characters: one allowed character needs 2n - 1 steps for n of them.
    fewest_steps = 2 * low - 1 if len(set(charset)) == 1 else low
    if fewest_steps > spec.time_steps:
        raise TextFormatError(f"length {low} needs {fewest_steps} CTC time steps; the model has {spec.time_steps}")
    return TextFormat("".join(dict.fromkeys(charset)), (low, min(high, spec.time_steps)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log of the softmax over the last axis, finite for finite logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed stably."""
    return np.exp(log_softmax(logits))


def greedy_paths(probabilities: np.ndarray) -> np.ndarray:
    """The best class at each step: (batch, time) class indices."""
    return probabilities.argmax(axis=-1)


def best_allowed_paths(log_probs: np.ndarray, classes: np.ndarray, min_length: int, max_length: int) -> np.ndarray:
    """The most probable CTC path of each item whose text uses only `classes` and has min..max characters.

    Viterbi over states (characters emitted so far, class of the last step), vectorised over
    the batch: a step may repeat the last class (same character), emit the blank, or start a
    character, which must differ from the last class unless a blank came between. `classes`
    lists the allowed character classes; the result holds indices into the full class axis.
    """
    batch, steps, _ = log_probs.shape
    local = np.concatenate([[BLANK_INDEX], classes])  # local class 0 is the blank
    emit = log_probs[:, :, local]
    n_local = len(local)
    scores = np.full((batch, max_length + 1, n_local), -np.inf)
    scores[:, 0, 0] = 0.0
    came_from = np.empty((steps, batch, max_length + 1, n_local), dtype=np.min_scalar_type(n_local))
    chars = np.arange(1, n_local)
    for t in range(steps):
        # Best and second-best previous class at each count: a new character may follow any class but itself.
        first = scores.argmax(axis=-1)
        first_score = np.take_along_axis(scores, first[..., None], -1)[..., 0]
        others = scores.copy()
        np.put_along_axis(others, first[..., None], -np.inf, -1)
        second = others.argmax(axis=-1)
        second_score = np.take_along_axis(others, second[..., None], -1)[..., 0]
        new = np.empty_like(scores)
        new[:, :, 0] = first_score + emit[:, t, None, 0]
        came_from[t, :, :, 0] = first
        clash = first[:, :-1, None] == chars  # the best previous class is this very character
        start_score = np.where(clash, second_score[:, :-1, None], first_score[:, :-1, None])
        start_from = np.where(clash, second[:, :-1, None], first[:, :-1, None])
        stay = scores[:, 1:, 1:]
        stays = stay >= start_score
        new[:, 1:, 1:] = np.where(stays, stay, start_score) + emit[:, t, None, 1:]
        came_from[t, :, 1:, 1:] = np.where(stays, chars, start_from)
        new[:, 0, 1:] = -np.inf
        scores = new
    ends = scores[:, min_length:max_length + 1].reshape(batch, -1).argmax(axis=-1)
    count, last = np.divmod(ends, n_local)
    count += min_length
    rows = np.arange(batch)
    paths = np.empty((batch, steps), dtype=np.int64)
    for t in range(steps - 1, -1, -1):
        paths[:, t] = last
        previous = came_from[t, rows, count, last].astype(np.int64)
        count = count - ((last != 0) & (previous != last))  # this step started a character
        last = previous
    return local[paths]


def run_starts(paths: np.ndarray) -> np.ndarray:
    """(batch, time) booleans: True where a CTC path starts a run of one class."""
    starts = np.ones_like(paths, dtype=bool)
    starts[:, 1:] = paths[:, 1:] != paths[:, :-1]
    return starts


def follows_format(paths: np.ndarray, classes: np.ndarray, min_length: int, max_length: int) -> np.ndarray:
    """(batch,) booleans: True where a path's text uses only `classes` and has min..max characters."""
    lengths = (run_starts(paths) & (paths != BLANK_INDEX)).sum(axis=1)
    known = (np.isin(paths, classes) | (paths == BLANK_INDEX)).all(axis=1)
    return known & (lengths >= min_length) & (lengths <= max_length)


def readings_from_paths(probabilities: np.ndarray, paths: np.ndarray, charset: str) -> list[Reading]:
    """Collapse (batch, time) CTC paths into readings with the path's and each character's probability."""
    if len(paths) == 0:
        return []
    on_path = np.take_along_axis(probabilities, paths[..., None], -1)[..., 0].astype(np.float64)
    confidence = np.exp(np.log(np.maximum(on_path, 1e-30)).sum(axis=-1))
    starts = run_starts(paths)
    keep = starts & (paths != BLANK_INDEX)  # the first step of each character's run
    # The best step of every run of one class, then of the characters' runs only, split by row.
    first_steps = np.flatnonzero(starts.ravel())
    run_best = np.maximum.reduceat(on_path.ravel(), first_steps)[paths.ravel()[first_steps] != BLANK_INDEX]
    per_row = np.split(run_best, np.cumsum(keep.sum(axis=1))[:-1])
    return [
        Reading(decode_indices(row[mask], charset), float(min(1.0, conf)), tuple(float(c) for c in chars))
        for row, mask, conf, chars in zip(paths, keep, confidence, per_row)
    ]


def greedy_decode(probabilities: np.ndarray, charset: str) -> list[Reading]:
    """Greedy CTC decoding of (batch, time, classes) probabilities: the best class at each step.

    Repeats collapse and blanks drop out; the confidence is the product of the per-step
    maximum probabilities along that path. Any length, any character of the charset.
    """
    return readings_from_paths(probabilities, greedy_paths(probabilities), charset)


def format_decode(logits: np.ndarray, charset: str, text_format: TextFormat) -> list[Reading]:
    """Exact constrained decoding of (batch, time, classes) logits: the best path of the format's charset and lengths.

    `text_format` must be complete (see `resolve_format`).
    """
    if len(logits) == 0:
        return []
    log_probs = log_softmax(logits.astype(np.float64))
    classes = np.array(encode_label(text_format.charset, charset))
    # The best path of all is the best allowed one whenever it is allowed (up to exact ties): most rows
    # skip the Viterbi.
    paths = greedy_paths(log_probs)
    outside = ~follows_format(paths, classes, *text_format.lengths)
    if outside.any():
        paths[outside] = best_allowed_paths(log_probs[outside], classes, *text_format.lengths)
    return readings_from_paths(np.exp(log_probs), paths, charset)


def decoding_format(spec: ModelSpec, text_format: TextFormat | None, greedy: bool) -> TextFormat | None:
    """The complete format to decode in (the model's own by default), None for greedy; a TextFormatError if unusable."""
    if not greedy:
        return resolve_format(spec, text_format)
    if text_format is not None:
        raise TextFormatError("greedy decoding reads any length and character; it takes no text format")
    return None


def decode(logits: np.ndarray, spec: ModelSpec, text_format: TextFormat | None = None,
           greedy: bool = False) -> list[Reading]:
    """Readings of (batch, time, classes) logits: format-aware (the model's own format by default) or greedy."""
    text_format = decoding_format(spec, text_format, greedy)
    if text_format is None:
        return greedy_decode(softmax(logits), spec.charset)
    return format_decode(logits, spec.charset, text_format)


def character_errors(truth: str, prediction: str) -> int:
    """Levenshtein distance between two strings (insertions, deletions, substitutions)."""
    previous = list(range(len(prediction) + 1))
    for i, t in enumerate(truth, start=1):
        current = [i]
        for j, p in enumerate(prediction, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (t != p)))
        previous = current
    return previous[-1]


def score(truths: list[str], predictions: list[str]) -> tuple[float, float]:
    """(sequence accuracy, character error rate) of predictions against truths."""
    if not truths:
        return math.nan, math.nan
    right = sum(t == p for t, p in zip(truths, predictions))
    errors = sum(character_errors(t, p) for t, p in zip(truths, predictions))
    return right / len(truths), errors / max(1, sum(len(t) for t in truths))
