"""captcha_reader.decoding: greedy and format-aware CTC decoding, softmax and scores (no TensorFlow)."""

import itertools

import numpy as np
import pytest
from helpers import one_hot_path

from captcha_reader.base import ModelSpec, TextFormatError
from captcha_reader.decoding import (
    TextFormat,
    best_allowed_paths,
    character_errors,
    decode,
    format_decode,
    greedy_decode,
    log_softmax,
    parse_lengths,
    resolve_format,
    score,
    softmax,
)


def collapse(path) -> list[int]:
    """The characters a CTC path spells: repeats merged, blanks (0) dropped."""
    return [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]


def brute_force_best(log_probs: np.ndarray, classes, low: int, high: int) -> float:
    """The best score over every path whose characters are in `classes` and number low..high."""
    steps, n_classes = log_probs.shape
    allowed = [0, *classes]
    scores = [sum(log_probs[t, c] for t, c in enumerate(path))
              for path in itertools.product(allowed, repeat=steps) if low <= len(collapse(path)) <= high]
    return max(scores, default=-np.inf)


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    charset = "0123456789"
    # 1 1 _ 1 2 2 _ _ 3 -> "1123" (classes are digit + 1; 0 is the blank)
    path = [2, 2, 0, 2, 3, 3, 0, 0, 4]
    (text, confidence, chars), = greedy_decode(one_hot_path(path, 11)[None], charset)
    assert text == "1123"
    assert confidence == pytest.approx(0.9 ** len(path))
    assert chars == pytest.approx((0.9,) * 4)


def test_greedy_decode_batch_and_empty_reading():
    charset = "ab"
    probs = np.stack([one_hot_path([0, 0, 0], 3), one_hot_path([1, 0, 2], 3)])
    assert [r.text for r in greedy_decode(probs, charset)] == ["", "ab"]
    assert greedy_decode(probs[:0], charset) == []


def test_exact_best_path_matches_brute_force_on_tiny_cases():
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(60):
        steps, n_classes = int(rng.integers(1, 6)), int(rng.integers(2, 5))
        log_probs = log_softmax(rng.normal(size=(1, steps, n_classes)) * 3)
        classes = np.sort(rng.choice(np.arange(1, n_classes), int(rng.integers(1, n_classes)), replace=False))
        low = int(rng.integers(1, steps + 1))
        high = int(rng.integers(low, steps + 1))
        best = brute_force_best(log_probs[0], classes, low, high)
        if best == -np.inf:
            continue  # no allowed path (one character repeated in too few steps)
        path = best_allowed_paths(log_probs, classes, low, high)[0]
        assert low <= len(collapse(path)) <= high and set(collapse(path)) <= set(classes)
        assert log_probs[0, np.arange(steps), path].sum() == pytest.approx(best)
        checked += 1
    assert checked > 30


def test_format_decode_reads_the_best_allowed_path_of_every_row():
    # Rows whose best path is already allowed skip the Viterbi; the readings must not change.
    rng = np.random.default_rng(11)
    charset, classes, lengths = "abcde", np.array([1, 2, 3]), (2, 3)
    logits = rng.normal(size=(400, 8, 6)) * 2
    logits[:200, :, 4:] -= 6  # half the rows rarely want the excluded characters d and e
    logits[:200, :, 0] += 2  # and emit the blank more often: fewer characters
    paths = best_allowed_paths(log_softmax(logits), classes, *lengths)
    expected = [collapse(path) for path in paths]
    readings = format_decode(logits, charset, TextFormat("abc", lengths))
    assert [[charset.index(c) + 1 for c in r.text] for r in readings] == expected
    greedy = [r.text for r in greedy_decode(softmax(logits), charset)]
    allowed = sum(set(text) <= set("abc") and 2 <= len(text) <= 3 for text in greedy)
    assert 50 < allowed < 350  # both kinds of row were read


def test_repeated_characters_need_a_blank_between_them():
    # Three steps all say "a": without a blank between them they can spell only one "a".
    probs = one_hot_path([1, 1, 1], 3, peak=0.98)
    spec = ModelSpec("ab", 8, 12, 2, 2)
    reading, = decode(np.log(probs)[None], spec, TextFormat(charset="a"))
    assert reading.text == "aa"
    assert decode(np.log(probs)[None], spec, greedy=True)[0].text == "a"


def test_default_format_is_the_training_lengths_and_charset():
    # Greedy reads "12345" (five steps, five characters); the model was trained on 4 characters.
    path = [2, 3, 4, 5, 6, 0, 0, 0]
    logits = np.log(one_hot_path(path, 11))[None]
    spec = ModelSpec("0123456789", 32, 32, 4, 4)
    assert decode(logits, spec, greedy=True)[0].text == "12345"
    reading, = decode(logits, spec)
    assert len(reading.text) == 4 and reading.text in {"1234", "1235", "1245", "1345", "2345"}
    assert 0.0 <= reading.confidence <= 1.0 and len(reading.char_confidences) == 4
    assert decode(logits, spec, TextFormat(lengths=(3, 5)))[0].text == "12345"
    assert len(decode(logits, spec, TextFormat(lengths=(2, 2)))[0].text) == 2


def test_charset_restriction_is_respected():
    path = [2, 0, 3, 0, 11, 0, 4, 0]  # "1 2 A 3" in the charset "0123456789A"
    logits = np.log(one_hot_path(path, 12))[None]
    spec = ModelSpec("0123456789A", 32, 32, 4, 4)
    assert decode(logits, spec)[0].text == "12A3"
    digits = decode(logits, spec, TextFormat(charset="0123456789"))[0].text
    assert len(digits) == 4 and "A" not in digits and digits.startswith("12") and digits.endswith("3")


def test_char_confidences_are_the_best_step_of_each_run():
    probs = one_hot_path([1, 1, 0, 2], 3, peak=0.6)
    probs[1] = [0.05, 0.9, 0.05]
    reading, = decode(np.log(probs)[None], ModelSpec("ab", 8, 16, 2, 2))
    assert reading.text == "ab" and reading.char_confidences == pytest.approx((0.9, 0.6))
    assert reading.confidence == pytest.approx(0.6 * 0.9 * 0.6 * 0.6)


def test_empty_batch():
    spec = ModelSpec("ab", 8, 16, 2, 2)
    assert decode(np.zeros((0, 4, 3)), spec) == [] and decode(np.zeros((0, 4, 3)), spec, greedy=True) == []


def test_old_specs_allow_any_length_up_to_the_longest():
    spec = ModelSpec("ab", 8, 16, 3)
    assert resolve_format(spec, None) == TextFormat("ab", (1, 3))


@pytest.mark.parametrize("text_format, message", [
    (TextFormat(charset="abz"), "not 'z'"),
    (TextFormat(charset=""), "reads only"),
    (TextFormat(lengths=(3, 2)), "min <= max"),
    (TextFormat(lengths=(5, 5)), "time steps"),
    (TextFormat(charset="a", lengths=(3, 3)), "needs 5 CTC time steps"),
])
def test_formats_the_model_cannot_read_are_user_errors(text_format, message):
    with pytest.raises(TextFormatError, match=message):
        resolve_format(ModelSpec("ab", 8, 16, 2, 2), text_format)


def test_parse_lengths():
    assert parse_lengths("4") == (4, 4) and parse_lengths("4-6") == (4, 6)
    for bad in ("", "x", "0", "6-4", "4-"):
        with pytest.raises(TextFormatError):
            parse_lengths(bad)


def test_greedy_takes_no_format():
    with pytest.raises(TextFormatError, match="greedy"):
        decode(np.zeros((1, 4, 3)), ModelSpec("ab", 8, 16, 2), TextFormat(lengths=(2, 2)), greedy=True)


def test_softmax_rows_sum_to_one():
    probs = softmax(np.array([[[1000.0, 0.0, -1000.0]]]))
    assert np.allclose(probs.sum(-1), 1) and probs[0, 0, 0] == pytest.approx(1)
    assert np.allclose(np.exp(log_softmax(np.array([[1000.0, 0.0, -1000.0]]))), probs[0])


def test_score_counts_sequences_and_characters():
    seq_acc, cer = score(["1234", "5678"], ["1234", "568"])
    assert seq_acc == 0.5
    assert cer == pytest.approx(1 / 8)
    assert character_errors("kitten", "sitting") == 3
