"""captcha_reader.decoding: greedy CTC decoding, softmax and scores (no TensorFlow)."""


import numpy as np
import pytest
from helpers import one_hot_path

from captcha_reader.decoding import character_errors, greedy_decode, score, softmax


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    charset = "0123456789"
    # 1 1 _ 1 2 2 _ _ 3 -> "1123" (classes are digit + 1; 0 is the blank)
    path = [2, 2, 0, 2, 3, 3, 0, 0, 4]
    (text, confidence), = greedy_decode(one_hot_path(path, 11)[None], charset)
    assert text == "1123"
    assert confidence == pytest.approx(0.9 ** len(path))


def test_greedy_decode_batch_and_empty_reading():
    charset = "ab"
    probs = np.stack([one_hot_path([0, 0, 0], 3), one_hot_path([1, 0, 2], 3)])
    assert [text for text, _ in greedy_decode(probs, charset)] == ["", "ab"]


def test_softmax_rows_sum_to_one():
    probs = softmax(np.array([[[1000.0, 0.0, -1000.0]]]))
    assert np.allclose(probs.sum(-1), 1) and probs[0, 0, 0] == pytest.approx(1)


def test_score_counts_sequences_and_characters():
    seq_acc, cer = score(["1234", "5678"], ["1234", "568"])
    assert seq_acc == 0.5
    assert cer == pytest.approx(1 / 8)
    assert character_errors("kitten", "sitting") == 3
