"""Training on several devices or machines with tf.distribute.

    python ocr_captcha.py --strategy auto          # MirroredStrategy with several GPUs, else the default
    python ocr_captcha.py --strategy mirrored      # every local GPU (or the CPU) in sync
    TF_CONFIG='{...}' python ocr_captcha.py --strategy multiworker   # on every machine

--batch-size is per replica; the global batch is that times the number of replicas.
Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
multi-worker training runs its own loop with `strategy.run`: the same model, loss,
optimizer, schedule and metrics, and fit()'s callbacks. Only the chief writes files.
"""

import json
import os
import sys
import time

from captcha_reader.base import DatasetError
from captcha_reader.metrics import CharacterErrorRate, SequenceAccuracy
from captcha_reader.tf_import import keras, tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for --strategy (create it before any other TensorFlow work)."""
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise DatasetError("--strategy multiworker needs TF_CONFIG describing the cluster and this worker's task")
        try:
            config = json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise DatasetError(f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos})") from None
        if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
            raise DatasetError('TF_CONFIG needs a "cluster" object and a "task" object')
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_multiworker(strategy: tf.distribute.Strategy) -> bool:
    """True under MultiWorkerMirroredStrategy."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes the model, logs, plots and checkpoints."""
    if not is_multiworker(strategy):
        return True
    resolver = strategy.cluster_resolver
    jobs = resolver.cluster_spec().as_dict()
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """Split a dataset of global batches across the workers and replicas."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def fit_multiworker(strategy: tf.distribute.Strategy, model: keras.Model, train_ds: tf.data.Dataset,
                    val_ds: tf.data.Dataset | None, epochs: int, global_batch: int, verbose: int,
                    callbacks: list[keras.callbacks.Callback]) -> dict:
    """fit() for MultiWorkerMirroredStrategy: train, validate and call fit()'s callbacks each epoch; the history."""
    per_example_loss = keras.losses.CTC(reduction=None)
    with strategy.scope():
        tracked = {"seq_acc": SequenceAccuracy(), "cer": CharacterErrorRate()}

    def step(images: tf.Tensor, labels: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """One replica's batch: its loss sum and count, a gradient step when training."""
        with tf.GradientTape() as tape:
            logits = model(images, training=training)
            losses = per_example_loss(labels, logits)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
        if training:
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        for metric in tracked.values():
            metric.update_state(labels, logits)
        return tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32)

    @tf.function
    def run_step(batch: tuple, training: bool) -> list[tf.Tensor]:
        """One global batch across the replicas: the summed loss and count."""
        sums = strategy.run(step, args=(*batch, training))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in sums]

    def run_epoch(dataset: tf.distribute.DistributedDataset, training: bool) -> dict:
        """A pass over `dataset`: the mean loss and the metrics."""
        for metric in tracked.values():
            metric.reset_state()
        loss_sum, count = 0.0, 0.0
        for batch in dataset:
            batch_loss, batch_count = run_step(batch, training)
            loss_sum, count = loss_sum + float(batch_loss), count + float(batch_count)
        return {"loss": loss_sum / max(count, 1.0), **{k: float(m.result()) for k, m in tracked.items()}}

    train_dist = distribute(strategy, train_ds)
    val_dist = distribute(strategy, val_ds) if val_ds is not None else None
    history = keras.callbacks.History()
    epoch_ends = keras.callbacks.CallbackList([*callbacks, history], model=model, epochs=epochs)
    model.stop_training = False
    epoch_ends.on_train_begin()
    for epoch in range(epochs):
        started = time.monotonic()
        epoch_ends.on_epoch_begin(epoch)
        logs = run_epoch(train_dist, training=True)
        if val_dist is not None:
            logs.update({f"val_{k}": v for k, v in run_epoch(val_dist, training=False).items()})
        if verbose:
            shown = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
            print(f"Epoch {epoch + 1}/{epochs} - {time.monotonic() - started:.0f}s - {shown}", flush=True)
        epoch_ends.on_epoch_end(epoch, logs)
        if model.stop_training:
            print(f"Epoch {epoch + 1}: early stopping", file=sys.stderr)
            break
    epoch_ends.on_train_end()
    return history.history


def task_description(strategy: tf.distribute.Strategy) -> str:
    """The strategy for the log: its name (none for TensorFlow's default); for several workers also this one's task."""
    if not is_multiworker(strategy):
        name = type(strategy).__name__
        return "no tf.distribute strategy" if name.startswith("_Default") else name
    resolver = strategy.cluster_resolver
    workers = len(resolver.cluster_spec().as_dict().get("worker", []))
    return f"MultiWorkerMirroredStrategy, {resolver.task_type} {resolver.task_id} ({workers} workers)"
