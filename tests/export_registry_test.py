"""tfdisc.export.formats, issue 27: a new export format is one registry entry, nothing else.

The toy format of tests/export_toy_format.py (architecture + weights in a .npz) is registered,
then exported, loaded and run through the public API, ``python -m tfdisc.export --formats``
and the training binaries' ``--export``, with no other change to tfdisc.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

import tfdisc
from tfdisc import export
from tfdisc.export import cli as export_cli
from tfdisc.export import formats
from tests import export_toy_format as toy

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def toy_format():
    fmt = toy.register()
    toy.LOADED.clear()
    yield fmt
    formats.unregister(toy.NAME)


def _tiny(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return tfdisc.models.build("fcn2", precision="binary", input_bits=2, width=16, depth=2)


def _images(n=4, seed=1):
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype(np.float32)


def test_builtin_formats_are_registry_entries():
    assert formats.names()[:4] == export.FORMATS
    assert dict(export.FILE_NAMES) == {"saved_model": "saved_model",
                                       "packed_saved_model": "packed_saved_model",
                                       "tflite": "model.tflite", "lce": "model_lce.tflite"}
    assert formats.get("lce").requires is not None and formats.get("tflite").requires is None
    assert formats.get("tflite").options == ("float_weights",)


def test_toy_format_round_trips_through_the_public_api(toy_format, tmp_path):
    model = _tiny(1)
    assert toy.NAME not in export.FORMATS  # registered, not a default
    assert export.FILE_NAMES[toy.NAME] == toy.FILE_NAME
    out = str(tmp_path / "out")
    paths = export.export(model, out, [toy.NAME, "tflite"])
    assert paths[toy.NAME] == os.path.join(out, toy.FILE_NAME)
    assert isinstance(export.load(paths[toy.NAME]), tf.keras.Model)
    x = _images()
    want = model(x, training=False).numpy()
    run = export.predictor(paths[toy.NAME])
    np.testing.assert_allclose(run(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="float images"):  # the runner's input dtype is checked
        run((x * 255).astype(np.uint8))
    stats = export.compare(model, {toy.NAME: paths[toy.NAME]},
                           np.random.default_rng(2).integers(0, 256, (4, 28, 28, 1), np.uint8))
    assert stats[toy.NAME]["argmax_agreement"] == 1.0


def test_toy_format_input_dtype_support_is_checked_before_writing(toy_format, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"{toy.NAME}.*takes input_dtype float32.*uint8"):
        export.export(_tiny(), str(out), ["tflite", toy.NAME], input_dtype="uint8")
    assert not out.exists()  # not even the tflite artifact was written


def test_toy_format_overwrite_semantics(toy_format, tmp_path):
    a, b = _tiny(3), _tiny(4)
    out = str(tmp_path / "out")
    export.export(a, out, [toy.NAME])
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(export.ExportDirError, match=f"already holds an export.*{toy.FILE_NAME}"):
        export.export(b, out, ["tflite"])
    paths = export.export(b, out, ["tflite"], overwrite=True)
    assert sorted(os.listdir(out)) == ["model.tflite", "notes.txt"]  # the toy artifact is gone
    np.testing.assert_allclose(export.predictor(paths["tflite"])(_images()),
                               b(_images(), training=False).numpy(), rtol=1e-4, atol=1e-4)
    # A user's file named like the toy artifact is never removed.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    np.savez(foreign / toy.FILE_NAME, data=np.arange(3))
    with pytest.raises(export.ExportDirError, match="not written by tfdisc.export"):
        export.export(b, str(foreign), [toy.NAME], overwrite=True)
    assert np.load(foreign / toy.FILE_NAME)["data"].tolist() == [0, 1, 2]


def test_hdf5_is_refused_before_any_format_loader_sees_it(toy_format, tmp_path):
    inputs = tf.keras.Input((4,))
    h5 = tmp_path / "m.h5"
    tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs)).save(h5)
    disguised = tmp_path / "m.npz"  # the toy format matches *.npz
    shutil.copy(h5, disguised)
    with pytest.raises(export.UnsafeModelError, match="HDF5"):
        export.load(str(disguised))
    with pytest.raises(export.UnsafeModelError, match="HDF5"):
        export.predictor(str(disguised))
    assert toy.LOADED == []


def test_registry_refuses_bad_and_clashing_entries(toy_format):
    entry = toy.entry()
    with pytest.raises(ValueError, match="registered already"):
        formats.register(entry)
    assert formats.register(entry, replace=True) is entry
    with pytest.raises(ValueError, match="file name 'model.tflite'.*'tflite'"):
        formats.register(formats.Format(**{**vars(entry), "name": "t2",
                                           "file_name": "model.tflite"}))
    with pytest.raises(ValueError, match="without commas"):
        formats.Format(**{**vars(entry), "name": "a,b"})
    with pytest.raises(ValueError, match="plain file or directory name"):
        formats.Format(**{**vars(entry), "file_name": "../x.npz"})
    with pytest.raises(TypeError, match="`load` must be callable"):
        formats.Format(**{**vars(entry), "load": "np.load"})
    with pytest.raises(ValueError, match="input_dtypes"):
        formats.Format(**{**vars(entry), "input_dtypes": ("int8",)})
    with pytest.raises(ValueError, match="unknown option"):
        formats.Format(**{**vars(entry), "options": ("word_bits",)})
    with pytest.raises(TypeError, match="takes a Format"):
        formats.register({"name": "x"})
    with pytest.raises(KeyError, match="Unknown export format 'onnx'"):
        formats.unregister("onnx")
    with pytest.raises(ValueError, match=f"onnx.*choose from.*{toy.NAME}"):
        export.parse_formats("tflite,onnx")


def test_format_flags_use_the_registry(toy_format):
    assert export_cli.check_formats([toy.NAME, "lce"])
    assert export_cli.check_formats([], allow_empty=True)
    with pytest.raises(flags.ValidationError, match=f"choose from.*{toy.NAME}"):
        export_cli.check_formats(["onnx"])
    with pytest.raises(flags.ValidationError):
        export_cli.check_formats([])


def test_run_config_checks_export_formats_before_training(toy_format, monkeypatch, tmp_path):
    from tfdisc import pipeline  # pylint: disable=import-outside-toplevel

    assert pipeline.Config(dataset="mnist", export=(toy.NAME,)).export == (toy.NAME,)
    with pytest.raises(ValueError, match=f"{toy.NAME}.*takes input_dtype float32"):
        pipeline.Config(dataset="mnist", export=(toy.NAME,), export_input_dtype="uint8")
    monkeypatch.setitem(sys.modules, "larq_compute_engine", None)  # LCE not installed
    with pytest.raises(ValueError, match=r"`export`:.*tfdisc\[lce\]"):
        pipeline.Config(dataset="mnist", export=("lce",))
    with pytest.raises(ImportError, match=r"tfdisc\[lce\]"):
        export.export(_tiny(), str(tmp_path / "out"), ["saved_model", "lce"])
    assert not (tmp_path / "out").exists()  # refused before anything was written


def _cli(*args, register=True):
    code = ("from tests import export_toy_format as t; "
            + ("t.register(); " if register else "") + "t.run_export_cli()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_command_line_formats_flag_takes_a_registered_format(tmp_path):
    model = _tiny(5)
    model.save(tmp_path / "model.keras")
    out = tmp_path / "out"
    args = (f"--model={tmp_path}", f"--output_dir={out}", "--check_images=4")
    result = _cli(*args, f"--formats={toy.NAME},tflite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{toy.NAME}: {toy.FILE_NAME}" in result.stdout
    assert sorted(os.listdir(out)) == ["model.tflite", toy.FILE_NAME]
    assert result.stdout.count("argmax agreement 1.000") == 2
    # Without the registration the name is a usage error listing the formats, not a traceback.
    unknown = _cli(*args, f"--formats={toy.NAME}", "--overwrite", register=False)
    assert unknown.returncode != 0
    assert f"Unknown export format(s) ['{toy.NAME}']" in unknown.stderr
    assert "choose from saved_model, packed_saved_model, tflite, lce" in unknown.stderr
    assert "Traceback" not in unknown.stderr, unknown.stderr[-3000:]


def test_training_binary_export_flag_takes_a_registered_format(toy_format, mnist_dir, tmp_path):
    from tfdisc.experiments import mnist  # pylint: disable=import-outside-toplevel

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver():
        with pytest.raises(flags.IllegalFlagValueError, match="onnx"):
            flags.FLAGS.export = ["onnx"]
    with flagsaver.flagsaver(model="fcn2", precision="binary", bits=2, width=16, depth=2,
                             epochs=1, train_limit=256, test_limit=32, verbose="0",
                             epsilons=["0.1"], data_dir=mnist_dir, output_dir=str(tmp_path),
                             export=[toy.NAME]):
        mnist.main(["mnist"])
    model = export.load(str(tmp_path / "model.keras"))
    x = _images()
    got = export.predictor(str(tmp_path / "export" / toy.FILE_NAME))(x)
    np.testing.assert_allclose(got, model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
