"""CTC decoding and scoring: per-step probabilities in, texts, confidences and error rates out.

NumPy only: every runtime (Keras, ONNX, the service) decodes with these functions.
"""

import math

import numpy as np

from captcha_reader.base import BLANK_INDEX
from captcha_reader.labels import decode_indices


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def greedy_decode(probabilities: np.ndarray, charset: str) -> list[tuple[str, float]]:
    """Greedy CTC decoding of (batch, time, classes) probabilities into (text, confidence).

    The best class is taken at each step; repeats collapse and blanks drop out. The
    confidence is the product of the per-step maximum probabilities along that path.
    """
    best = probabilities.argmax(axis=-1)
    step_max = probabilities.max(axis=-1).astype(np.float64)
    confidence = np.exp(np.log(np.maximum(step_max, 1e-30)).sum(axis=-1))
    changed = np.ones_like(best, dtype=bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = changed & (best != BLANK_INDEX)
    return [
        (decode_indices(row[mask], charset), float(conf))
        for row, mask, conf in zip(best, keep, confidence)
    ]


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
