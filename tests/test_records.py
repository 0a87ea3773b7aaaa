"""TFRecord shards: images -> tools/pack_tfrecords.py -> training from the shards."""

import json
import shutil

import numpy as np
import tensorflow as tf

import ocr_captcha
import ocr_core
import ocr_records
import pack_tfrecords


def test_pack_then_train_from_shards(tiny_data, tmp_path, capsys):
    source = tmp_path / "src"
    shutil.copytree(tiny_data, source)
    (source / "9999.png").write_bytes(b"broken")
    shards = tmp_path / "shards"
    assert pack_tfrecords.main([str(source), str(shards), "--shards", "3"]) == 0
    assert len(list(shards.glob("*.tfrecord"))) == 3
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["count"] == 64 and meta["charset"] == "0123456789" and len(meta["bad_files"]) == 1
    assert (meta["height"], meta["width"]) == (48, 128)

    spec = ocr_records.spec_for(meta, 48, None)
    records = list(ocr_records.examples(str(shards), spec))
    assert len(records) == 64
    image, label, path = records[0]
    name = path.numpy().decode()
    assert ocr_core.decode_indices(label.numpy(), spec.charset) == ocr_core.label_from_filename(name)
    expected = ocr_core.read_image(tiny_data / name, 48, 128)
    assert np.abs(image.numpy() - expected).max() <= 2.5 / 255  # Pillow and TensorFlow resize alike to a level or two

    model = tmp_path / "m.keras"
    assert ocr_captcha.main(["--data-dir", str(shards), "--model", str(model), "--epochs", "1", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "64 images in 3 shards" in out
    split = json.loads((tmp_path / "split.json").read_text())
    assert 0 < len(split["validation"]) < 20
    assert ocr_captcha.load_reader(model).spec == spec


def test_split_by_name_is_deterministic():
    paths = tf.constant([f"{i:04d}.png" for i in range(2000)])
    held = ocr_records.in_validation(paths, 0.1, 1337).numpy()
    assert np.array_equal(held, ocr_records.in_validation(paths, 0.1, 1337).numpy())
    assert 150 < held.sum() < 250
    assert not np.array_equal(held, ocr_records.in_validation(paths, 0.1, 7).numpy())
