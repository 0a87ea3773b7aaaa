"""ocr_captcha.py: the CTC blank convention, training outputs, saving and reloading."""

import json

import keras
import numpy as np
import pytest

import ocr_captcha
import ocr_core
import ocr_metrics
from ocr_core import DatasetError, ModelSpec


def logits_for_path(path: list[int], classes: int) -> np.ndarray:
    """Logits that put almost all probability on one class per step."""
    logits = np.full((len(path), classes), -8.0, dtype=np.float32)
    logits[np.arange(len(path)), path] = 8.0
    return logits


def test_blank_is_index_zero_in_loss_metrics_and_decoding():
    charset = "0123456789"
    spec = ModelSpec(charset, 32, 32, 4)
    y_true = ocr_captcha.encode_labels(["1123"], spec)
    assert y_true.tolist() == [[2, 2, 3, 4]]
    # 1 _ 1 2 2 3 _ _ : a path that spells "1123" only if class 0 is the blank
    logits = logits_for_path([2, 0, 2, 3, 3, 4, 0, 0], 11)[None]
    assert float(keras.losses.CTC()(y_true, logits)) < 0.01
    assert ocr_core.greedy_decode(ocr_core.softmax(logits), charset)[0][0] == "1123"
    distances, lengths = ocr_metrics.greedy_edit_distances(y_true, logits)
    assert distances.numpy().tolist() == [0.0] and lengths.numpy().tolist() == [4.0]
    # The same path read with the blank as the last class would be a different label: the loss says so.
    moved = np.roll(logits, -1, axis=-1)
    assert float(keras.losses.CTC()(y_true, moved)) > 5


def test_metrics_count_whole_codes_and_characters():
    spec = ModelSpec("0123456789", 32, 32, 4)
    y_true = ocr_captcha.encode_labels(["1234", "5678"], spec)
    logits = np.stack([logits_for_path([2, 3, 4, 5, 0, 0, 0, 0], 11),
                       logits_for_path([6, 7, 0, 9, 0, 0, 0, 0], 11)])  # "568": one deletion
    accuracy, cer = ocr_metrics.SequenceAccuracy(), ocr_metrics.CharacterErrorRate()
    accuracy.update_state(y_true, logits)
    cer.update_state(y_true, logits)
    assert float(accuracy.result()) == 0.5
    assert float(cer.result()) == pytest.approx(1 / 8)


def test_split_is_seeded_and_disjoint():
    train, val = ocr_captcha.split_indices(100, 0.1, seed=5)
    again = ocr_captcha.split_indices(100, 0.1, seed=5)
    other = ocr_captcha.split_indices(100, 0.1, seed=6)
    assert len(val) == 10 and len(train) == 90
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    assert np.array_equal(val, again[1]) and not np.array_equal(val, other[1])


def test_training_writes_model_split_log_and_plots(trained_model, tiny_data):
    folder = trained_model.parent
    for name in ["split.json", "training_log.csv", "learning_curve.png", "model_structure.png",
                 "sample_predictions.png"]:
        assert (folder / name).stat().st_size > 0, name
    split = json.loads((folder / "split.json").read_text())
    assert split["seed"] == 1337 and len(split["validation"]) == 6 and len(split["train"]) == 58
    assert set(split["train"]).isdisjoint(split["validation"])
    header = (folder / "training_log.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "loss", "val_loss", "val_seq_acc", "val_cer"} <= set(header)
    assert not list(folder.glob(".*tmp*")), "no temporary files left behind"


def test_saved_model_carries_spec_and_loads_in_safe_mode(trained_model, reader):
    assert reader.spec == ModelSpec("0123456789", 48, 128, 4)
    assert set(reader.validation) == {"seq_acc", "cer", "n"}
    model = keras.saving.load_model(trained_model, safe_mode=True)
    assert ocr_captcha.model_info(model).spec == reader.spec


def test_save_load_predict_identical(trained_model, reader, tiny_data):
    paths = sorted(tiny_data.iterdir())[:8]
    batch = reader.preprocess(paths)
    again = ocr_captcha.load_reader(trained_model)
    assert np.array_equal(reader.model.predict(batch, verbose=0), again.model.predict(batch, verbose=0))
    assert reader.read(paths) == again.read([p.read_bytes() for p in paths])


def test_retraining_replaces_model_and_keeps_previous(trained_model, tiny_data, tmp_path):
    model_path = tmp_path / "m.keras"
    args = ["--data-dir", str(tiny_data), "--model", str(model_path), "--epochs", "1", "--verbose", "0"]
    assert ocr_captcha.main(args) == 0
    first = model_path.read_bytes()
    assert ocr_captcha.main(args + ["--seed", "2"]) == 0
    assert (tmp_path / "m.prev.keras").read_bytes() == first
    assert model_path.read_bytes() != first


def test_label_too_long_for_geometry_fails_before_training(tiny_data, tmp_path, capsys):
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / "m.keras"),
                               "--img-width", "12"])
    assert status == 1
    message = capsys.readouterr().err
    assert "CTC time steps" in message and "--img-width" in message
    assert not (tmp_path / "m.keras").exists()


def test_missing_data_dir_is_one_clear_line(tmp_path, capsys):
    assert ocr_captcha.main(["--data-dir", str(tmp_path / "nothing"), "--model", str(tmp_path / "m.keras")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nothing'}: no such folder"


def test_check_time_steps_names_the_label():
    spec = ModelSpec("01", 32, 16, 4)
    with pytest.raises(DatasetError, match="'0011'"):
        ocr_captcha.check_time_steps(["01", "0011"], spec)


def test_in_graph_metric_decoding_matches_numpy_decoding():
    """The metrics' TensorFlow greedy decoder agrees with ocr_core.greedy_decode on random logits."""
    charset = "abc"
    spec = ModelSpec(charset, 8, 40, 10)
    logits = np.random.default_rng(0).normal(0, 3, (200, 10, 4)).astype(np.float32)
    texts = [text for text, _ in ocr_core.greedy_decode(ocr_core.softmax(logits), charset)]
    readable = [i for i, t in enumerate(texts) if t]  # an empty label has no characters to encode
    distances, _ = ocr_metrics.greedy_edit_distances(ocr_captcha.encode_labels([texts[i] for i in readable], spec),
                                                     logits[readable])
    assert len(readable) > 150 and distances.numpy().max() == 0


def test_batch_norm_folded_for_inference_gives_the_same_logits(reader, tiny_data):
    batch = reader.preprocess(sorted(tiny_data.iterdir())[:16])
    folded = reader.inference_model
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in reader.model.layers)
    assert np.allclose(folded.predict_on_batch(batch), reader.model.predict_on_batch(batch), atol=1e-4)


def test_models_of_other_architectures_are_read_unfolded(tmp_path):
    spec = ModelSpec("01", 16, 16, 2)
    inputs = keras.Input((16, 16))
    x = keras.layers.Reshape((16, 16, 1))(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(x))
    x = keras.layers.Reshape((4, -1))(keras.layers.MaxPooling2D((4, 4))(x))
    x = ocr_captcha.ModelInfo(**spec.to_dict())(keras.layers.Dense(spec.num_classes)(x))
    other = keras.Model(inputs, x)
    assert ocr_captcha.Reader(other).inference_model is other


def test_training_keeps_the_moving_average_of_the_weights(tmp_path):
    spec = ModelSpec("0123456789", 48, 128, 4)
    rng = np.random.default_rng(0)
    images = rng.random((48, 48, 128), dtype=np.float32)
    labels = ocr_captcha.encode_labels(["".join(rng.choice(list("0123456789"), 4)) for _ in range(48)], spec)
    last_step = {}

    class LastStepWeights(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            last_step["weights"] = [w.numpy().copy() for w in self.model.trainable_weights]

    model = ocr_captcha.build_model(spec)
    elements = ocr_captcha.tf.data.Dataset.from_tensor_slices((images[:32], labels[:32]))
    args = ocr_captcha.parse_args(["--epochs", "1", "--batch-size", "4", "--verbose", "0"])
    ocr_captcha.fit(model, elements, 32, images[32:], labels[32:], args, tmp_path, [LastStepWeights()])
    kept = [w.numpy() for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(kept, last_step["weights"])), \
        "after one epoch the model should hold the average, not the last step's weights"
    assert model.optimizer.ema_momentum == 0.9  # a quarter of 8 steps per epoch, at the lower bound
