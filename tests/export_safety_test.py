"""tfdisc.export, issue 26: safe loading, checked predictor inputs, export directories, logs, CLI."""
import json
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl import logging as absl_logging
from absl.testing import flagsaver

import tfdisc
from tfdisc import export

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_LCE = True
try:
    import larq_compute_engine  # noqa: F401  pylint: disable=unused-import
except ImportError:
    HAVE_LCE = False


def _tiny(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return tfdisc.models.build("fcn2", precision="binary", input_bits=2, width=16, depth=2)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tfdisc.export", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


# --------------------------------------------------------------------------
# 1. Formats that can run code are refused.


def _lambda_model(marker):
    """A model whose Lambda layer writes `marker` whenever it is called (also on load)."""
    def evil(x, marker=str(marker)):
        with open(marker, "w") as f:
            f.write("code ran")
        return x

    inputs = tf.keras.Input((4,))
    return tf.keras.Model(inputs, tf.keras.layers.Lambda(evil)(inputs))


@pytest.fixture(scope="module")
def evil_files(tmp_path_factory):
    """{kind: path} of models carrying a Lambda layer that writes `marker` when run."""
    tmp = tmp_path_factory.mktemp("evil")
    marker = tmp / "MARKER"
    model = _lambda_model(marker)
    files = {"h5": tmp / "evil.h5", "keras": tmp / "evil.keras",
             "h5_renamed": tmp / "evil_h5.keras", "keras_saved_model": tmp / "evil_sm"}
    model.save(files["h5"])
    model.save(files["keras"])
    model.save(files["keras_saved_model"], save_format="tf")
    files["h5_renamed"].write_bytes(files["h5"].read_bytes())
    files["marker"] = marker
    return files


@pytest.fixture
def marker(evil_files):
    evil_files["marker"].unlink(missing_ok=True)
    yield evil_files["marker"]
    evil_files["marker"].unlink(missing_ok=True)


@pytest.mark.parametrize("kind", ["h5", "h5_renamed"])
def test_h5_with_lambda_is_refused_and_runs_no_code(evil_files, marker, kind):
    path = str(evil_files[kind])
    for load in (export.load, export.predictor):
        with pytest.raises(export.UnsafeModelError, match="arbitrary code execution"):
            load(path)
        assert not marker.exists()
    # The file is real: loading it with allow_unsafe does run its code.
    export.load(path, allow_unsafe=True)
    assert marker.exists()


def test_keras_file_with_lambda_loads_in_safe_mode_only(evil_files, marker):
    with pytest.raises(ValueError, match="(?i)lambda"):
        export.load(str(evil_files["keras"]))
    assert not marker.exists()


def test_keras_saved_model_loads_as_a_graph_without_its_python(evil_files, marker):
    loaded = export.load(str(evil_files["keras_saved_model"]))
    assert not isinstance(loaded, tf.keras.Model)
    assert not marker.exists()


def test_saved_model_that_writes_files_is_refused(tmp_path):
    module = tf.Module()
    target = str(tmp_path / "written")
    module.f = tf.function(lambda x: (tf.io.write_file(target, tf.strings.as_string(x)), x)[1],
                           input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "sm"))
    with pytest.raises(export.UnsafeModelError, match="WriteFile"):
        export.load(str(tmp_path / "sm"))
    assert export.load(str(tmp_path / "sm"), allow_unsafe=True) is not None


def test_command_line_refuses_h5_and_names_the_risk(evil_files, marker, tmp_path):
    result = _cli(f"--model={evil_files['h5']}", f"--output_dir={tmp_path / 'out'}",
                  "--formats=tflite")
    assert result.returncode != 0
    assert "arbitrary code execution" in result.stderr and "--allow_unsafe" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# 2. predictor checks its input against the export's input dtype.


@pytest.fixture(scope="module")
def uint8_export(tmp_path_factory):
    model = _tiny(1)
    formats = ["saved_model", "tflite"] + (["lce"] if HAVE_LCE else [])
    paths = export.export(model, str(tmp_path_factory.mktemp("u8")), formats, input_dtype="uint8")
    return model, paths


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "lce"])
def test_uint8_export_refuses_float_and_out_of_range_pixels(uint8_export, fmt):
    model, paths = uint8_export
    if fmt not in paths:
        pytest.skip("larq-compute-engine not installed")
    run = export.predictor(paths[fmt])
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1))
    with pytest.raises(TypeError, match=r"uint8.*np.round\(x \* 255\)"):
        run(pixels / 255.0)  # float [0, 1] images used to be cast to 0
    for bad in (300, -5):  # used to wrap to 44 and 251
        with pytest.raises(ValueError, match="0-255"):
            run(np.where(pixels == pixels.max(), bad, pixels))
    # Integers in 0-255 are converted exactly: int64 pixels give the uint8 answer.
    np.testing.assert_array_equal(run(pixels), run(pixels.astype(np.uint8)))
    want = model(pixels / 255.0, training=False).numpy()
    np.testing.assert_allclose(run(pixels), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_float_export_refuses_integer_pixels_nan_and_wrong_shape(tmp_path):
    model = _tiny(2)
    paths = export.export(model, str(tmp_path), ["saved_model", "tflite"])
    for path in paths.values():
        run = export.predictor(path)
        assert run.input_dtype == np.float32
        with pytest.raises(TypeError, match="Divide uint8 pixels by 255"):
            run(np.full((2, 28, 28, 1), 200, np.uint8))
        with pytest.raises(ValueError, match="NaN"):
            run(np.full((2, 28, 28, 1), np.nan, np.float32))
        with pytest.raises(ValueError, match=r"shape \(N, 28, 28, 1\)"):
            run(np.zeros((2, 32, 32, 3), np.float32))
        x = np.random.default_rng(3).random((2, 28, 28, 1))  # float64 is fine
        np.testing.assert_allclose(run(x), model(x, training=False).numpy(), rtol=1e-4,
                                   atol=1e-4)


# --------------------------------------------------------------------------
# 3. An export directory holding another export.


def test_export_refuses_a_directory_holding_another_export(tmp_path):
    a, b = _tiny(3), _tiny(4)
    out = str(tmp_path / "out")
    paths_a = export.export(a, out, ["saved_model", "tflite"])
    (tmp_path / "out" / "notes.txt").write_text("mine")
    before = open(paths_a["tflite"], "rb").read()
    with pytest.raises(export.ExportDirError, match="already holds an export.*overwrite"):
        export.export(b, out, ["tflite"])
    assert open(paths_a["tflite"], "rb").read() == before
    assert os.path.isdir(paths_a["saved_model"])

    paths_b = export.export(b, out, ["tflite"], overwrite=True)
    assert sorted(os.listdir(out)) == ["model.tflite", "notes.txt"]  # A's SavedModel is gone
    x = np.random.default_rng(5).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(export.predictor(paths_b["tflite"])(x),
                               b(x, training=False).numpy(), rtol=1e-4, atol=1e-4)


def test_overwrite_never_removes_a_file_it_did_not_write(tmp_path):
    (tmp_path / "model.tflite").write_text("a user's file, not a flatbuffer")
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "data.csv").write_text("1,2")
    with pytest.raises(export.ExportDirError, match="not written by tfdisc.export"):
        export.export(_tiny(), str(tmp_path), ["tflite"], overwrite=True)
    assert (tmp_path / "model.tflite").read_text().startswith("a user's file")
    assert (tmp_path / "saved_model" / "data.csv").exists()


def test_command_line_overwrite_flag(tmp_path):
    model = _tiny(5)
    model.save(tmp_path / "model.keras")
    export.export(model, str(tmp_path / "out"), ["saved_model"])
    args = (f"--model={tmp_path}", f"--output_dir={tmp_path / 'out'}", "--formats=tflite")
    refused = _cli(*args)
    assert refused.returncode != 0 and "--overwrite" in refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert _cli(*args, "--overwrite").returncode == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["model.tflite"]


# --------------------------------------------------------------------------
# 4. Corrupt files name the file.


def test_corrupt_keras_and_tflite_files_name_the_file(tmp_path):
    good = tmp_path / "good.keras"
    _tiny().save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[:200])  # BadZipFile
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as archive:  # KeyError: config.json
        archive.writestr("metadata.json", "{}")
    bad_weights = tmp_path / "bad_weights.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad_weights, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:64] if item.filename.endswith(".h5") else data)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 7)
    for path in (truncated, no_config, bad_weights, garbage):
        with pytest.raises(ValueError, match=str(path.name)):
            export.load(str(path))
        with pytest.raises(ValueError, match=str(path.name)):
            export.predictor(str(path))


def test_command_line_corrupt_model_is_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = _cli(f"--model={bad}", f"--output_dir={tmp_path / 'out'}", "--formats=tflite")
    assert result.returncode != 0
    assert "model.keras" in result.stderr and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


# --------------------------------------------------------------------------
# 5. The LCE loader line of the docs runs.


@pytest.mark.skipif(not HAVE_LCE, reason="larq-compute-engine not installed (tfdisc[lce])")
def test_documented_lce_interpreter_line_runs(tmp_path):
    assert "from larq_compute_engine.testing import" not in export.__doc__
    assert "import larq_compute_engine as lce" in export.__doc__
    model = _tiny(6)
    path = export.lce(model, str(tmp_path / "m.tflite"))
    x = np.random.default_rng(6).random((1, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np\n"
            "import larq_compute_engine as lce\n"
            f"interpreter = lce.testing.Interpreter(open({path!r}, 'rb').read())\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, interpreter.predict(np.load("
            f"{str(tmp_path / 'x.npy')!r})))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x, training=False).numpy(),
                               rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# 6. Export is quiet at INFO, keeps warnings, restores the verbosity.


def test_export_silences_info_lines_and_restores_levels(tmp_path, caplog):
    old_verbosity, old_level = absl_logging.get_verbosity(), tf.get_logger().level
    absl_logging.set_verbosity(absl_logging.INFO)
    tf.get_logger().setLevel(logging.INFO)
    try:
        caplog.set_level(logging.INFO)
        export.export(_tiny(), str(tmp_path), ["saved_model", "tflite"])
        info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert not [m for m in info if "Assets written" in m or "Sharding callback" in m
                    or "fingerprint" in m], info
        with export.quiet_tf_logs():
            tf.get_logger().warning("still shown")
            absl_logging.warning("also shown")
        messages = [r.getMessage() for r in caplog.records]
        assert "still shown" in messages and "also shown" in messages
        assert absl_logging.get_verbosity() == absl_logging.INFO
        assert tf.get_logger().level == logging.INFO
    finally:
        absl_logging.set_verbosity(old_verbosity)
        tf.get_logger().setLevel(old_level)


# --------------------------------------------------------------------------
# 7, 8. --check_images on real test images of a run directory's model; noise labelled.


def test_compare_on_real_pixels_feeds_each_artifact_its_dtype(mnist_dir, tmp_path):
    model = _tiny(7)
    pixels = tfdisc.data.load_arrays("mnist", "test", data_dir=mnist_dir)[0][:8]
    paths = {**export.export(model, str(tmp_path / "f"), ["tflite"]),
             "u8": export.export(model, str(tmp_path / "u"), ["tflite"],
                                 input_dtype="uint8")["tflite"]}
    stats = export.compare(model, paths, pixels)
    assert all(s["argmax_agreement"] == 1.0 and s["max_logit_diff"] < 1e-3
               for s in stats.values()), stats


def test_command_line_run_directory_and_real_check_images(mnist_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _tiny(8).save(run / "model.keras")
    result = _cli(f"--model={run}", f"--output_dir={tmp_path / 'out'}", "--formats=tflite",
                  "--check_images=16", "--dataset=mnist", f"--data_dir={mnist_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "first 16 mnist test images" in result.stdout and "noise" not in result.stdout
    assert "argmax agreement 1.000" in result.stdout
    noise = _cli(f"--model={run}", f"--output_dir={tmp_path / 'noise'}", "--formats=tflite",
                 "--check_images=4")
    assert noise.returncode == 0, noise.stderr[-3000:]
    assert "uniform-noise images (NOT real data" in noise.stdout
    # Python INFO lines of the save are gone (C++ ones follow TF_CPP_MIN_LOG_LEVEL).
    assert "Sharding callback" not in noise.stderr and "Assets written" not in noise.stderr


def test_load_accepts_a_run_directory_and_explains_other_directories(tmp_path):
    _tiny(9).save(tmp_path / "model.keras")
    assert isinstance(export.load(str(tmp_path)), tf.keras.Model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a SavedModel.*nor a run directory"):
        export.load(str(tmp_path / "empty"))


# --------------------------------------------------------------------------
# 9. The training binary's --export takes --input_dtype and --float_weights.


def test_training_binary_export_dtype_and_weights(mnist_dir, tmp_path):
    from tfdisc.experiments import mnist  # pylint: disable=import-outside-toplevel

    assert flags.FLAGS.find_module_defining_flag("input_dtype") == "tfdisc.export.cli"
    assert flags.FLAGS.find_module_defining_flag("float_weights") == "tfdisc.export.cli"
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(model="fcn2", precision="full", bits=2, width=256, depth=2,
                             epochs=1, train_limit=256, test_limit=32, verbose="0",
                             epsilons=["0.1"], data_dir=mnist_dir, output_dir=str(tmp_path),
                             export=["tflite"], input_dtype="uint8", float_weights="int8"):
        mnist.main(["mnist"])
    with open(tmp_path / "flags.json") as f:
        recorded = json.load(f)
    assert (recorded["input_dtype"], recorded["float_weights"]) == ("uint8", "int8")
    path = str(tmp_path / "export" / "model.tflite")
    run = export.predictor(path)
    assert run.input_dtype == np.uint8
    model = export.load(str(tmp_path / "model.keras"))
    float_path = export.tflite(model, str(tmp_path / "float.tflite"), input_dtype="uint8")
    assert os.path.getsize(path) < 0.5 * os.path.getsize(float_path)  # int8 weights
    pixels = tfdisc.data.load_arrays("mnist", "test", data_dir=mnist_dir)[0][:8]
    assert (run(pixels).argmax(-1) == model(pixels / 255.0).numpy().argmax(-1)).mean() >= 0.75


# --------------------------------------------------------------------------
# The same classes of bug in the per-format writers and readers.


def test_format_writers_never_mix_with_or_clobber_other_files(tmp_path):
    model = _tiny(10)
    user_dir = tmp_path / "photos"
    user_dir.mkdir()
    (user_dir / "cat.jpg").write_bytes(b"jpeg")
    with pytest.raises(export.ExportDirError, match="not written by tfdisc.export"):
        export.saved_model(model, str(user_dir))
    assert os.listdir(user_dir) == ["cat.jpg"]
    with pytest.raises(export.ExportDirError, match="is a directory"):
        export.tflite(model, str(user_dir))
    # A SavedModel written again at the same path is replaced whole: no stale file is kept.
    path = export.saved_model(model, str(tmp_path / "sm"))
    stale = os.path.join(path, "variables", "stale.data")
    open(stale, "w").close()
    export.saved_model(model, path)
    assert not os.path.exists(stale)


def test_readers_name_a_corrupt_artifact(tmp_path):
    with pytest.raises(ValueError, match="not a readable TFLite flatbuffer"):
        export.lite_ops(b"\x00" * 7)
    with pytest.raises(ValueError, match="no saved_model.pb"):
        export.saved_model_ops(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"\xff\xff not a proto")
    with pytest.raises(ValueError, match="not a readable SavedModel"):
        export.load(str(tmp_path))
