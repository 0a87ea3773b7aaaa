"""Reading metrics shown every epoch: whole-code accuracy and character error rate.

Both decode the logits greedily, inside the graph and cheaply. A reader decodes in the
format of the training labels by default, which can only fix readings greedy gets wrong, so
these numbers are a floor of what a user gets; the end of training reports the reader's own.
"""

from captcha_reader.base import BLANK_INDEX
from captcha_reader.tf_import import keras, tf


def greedy_edit_distances(y_true: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image edit distance between the greedy CTC reading and the label, and the label lengths."""
    batch = tf.shape(logits)[0]
    steps = tf.fill([batch], tf.shape(logits)[1])
    decoded, _ = tf.nn.ctc_greedy_decoder(
        tf.transpose(logits, [1, 0, 2]), steps, merge_repeated=True, blank_index=BLANK_INDEX
    )
    truth = tf.sparse.from_dense(tf.cast(y_true, tf.int64))  # padding is the blank, 0, so it drops out
    distances = tf.edit_distance(tf.cast(decoded[0], tf.int64), truth, normalize=False)
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(y_true, BLANK_INDEX), tf.float32), axis=-1)
    return distances, lengths


@keras.saving.register_keras_serializable(package="ocr_captcha")
class SequenceAccuracy(keras.metrics.Metric):
    """Fraction of images whose whole code is read right."""

    def __init__(self, name: str = "seq_acc", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.right = self.add_variable(shape=(), initializer="zeros", name="right")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> None:
        """Add one batch."""
        distances, _ = greedy_edit_distances(y_true, y_pred)
        self.right.assign_add(tf.reduce_sum(tf.cast(distances == 0, tf.float32)))
        self.total.assign_add(tf.cast(tf.size(distances), tf.float32))

    def result(self) -> tf.Tensor:
        """Accuracy so far."""
        return tf.math.divide_no_nan(self.right, self.total)


@keras.saving.register_keras_serializable(package="ocr_captcha")
class CharacterErrorRate(keras.metrics.Metric):
    """Edit distance of the greedy readings divided by the number of label characters."""

    def __init__(self, name: str = "cer", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.errors = self.add_variable(shape=(), initializer="zeros", name="errors")
        self.chars = self.add_variable(shape=(), initializer="zeros", name="chars")

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> None:
        """Add one batch."""
        distances, lengths = greedy_edit_distances(y_true, y_pred)
        self.errors.assign_add(tf.reduce_sum(distances))
        self.chars.assign_add(tf.reduce_sum(lengths))

    def result(self) -> tf.Tensor:
        """Error rate so far."""
        return tf.math.divide_no_nan(self.errors, self.chars)
