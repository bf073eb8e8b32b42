"""tfdisc.export: every zoo family round-trips through every format, and the errors."""
import json
import os
import subprocess
import sys
import textwrap

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

import tfdisc
from tfdisc import convert, export
from tests import testing_utils

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_LCE = True
try:
    import larq_compute_engine  # noqa: F401  pylint: disable=unused-import
except ImportError:
    HAVE_LCE = False
ops = pytest.importorskip("tfdisc.ops", reason="op library unavailable", exc_type=ImportError)

# Every zoo family, tiny; all BNN with a 2-bit input quantizer.
ZOO = {
    "fcn1": dict(width=64, depth=3),
    "fcn2": dict(width=48, depth=3),
    "alexnet_cifar": dict(width=8, depth=1, input_shape=(16, 16, 3)),
    "cnn_small": dict(width=8, input_shape=(16, 16, 3)),
    "resnet20": dict(width=8, input_shape=(16, 16, 3)),
    "alexnet": dict(width=12, depth=1, input_shape=(32, 32, 3), num_classes=10),
}
FORMATS = [f for f in export.FORMATS if f != "lce" or HAVE_LCE]


def test_zoo_covers_every_family():
    assert sorted(ZOO) == tfdisc.models.available()


def _images(model, n, seed=0):
    return np.random.default_rng(seed).random((n, *model.input_shape[1:])).astype(np.float32)


def _binary_layers(model):
    return sum(isinstance(l, (lq.layers.QuantDense, lq.layers.QuantConv2D)) for l in model.layers)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """{family: (model, {format: path})}, every format exported once per family."""
    out = {}
    for i, (name, kwargs) in enumerate(sorted(ZOO.items())):
        # Seeded kernels, so every run checks the same models. Unseeded, one run in many
        # failed resnet20-lce once (not reproduced); the likely cause is a pre-activation
        # within float rounding of 0, which TF and TFLite (summing in different orders)
        # can binarize differently.
        tf.keras.utils.set_random_seed(i)
        model = tfdisc.models.build(name, precision="binary", input_bits=2, **kwargs)
        testing_utils.random_batch_norms(model, seed=i)
        paths = export.export(model, str(tmp_path_factory.mktemp(name)), FORMATS)
        out[name] = (model, paths)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_round_trip_predicts_like_keras(zoo, name, fmt):
    model, paths = zoo[name]
    x = _images(model, 16, seed=1)
    want = model(x, training=False).numpy()
    got = export.predictor(paths[fmt])(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_tflite_uses_builtin_ops_only(zoo):
    for name, (_, paths) in zoo.items():
        names = export.lite_ops(paths["tflite"])
        assert all(op.isupper() for op in names), (name, names)  # custom ops are CamelCase
        assert "SIGN" in names  # larq's sign stays a float op here


@pytest.mark.skipif(not HAVE_LCE, reason="larq-compute-engine not installed (tfdisc[lce])")
def test_lce_binarizes_every_binary_layer_dense_included(zoo):
    for name, (model, paths) in zoo.items():
        names = export.lite_ops(paths["lce"])
        assert names.get("LceBconv2d", 0) == _binary_layers(model), (name, names)
        assert os.path.getsize(paths["lce"]) < os.path.getsize(paths["tflite"])


@pytest.mark.skipif(not HAVE_LCE, reason="larq-compute-engine not installed (tfdisc[lce])")
def test_lce_binary_dense_layers_are_over_20x_smaller_than_float(tmp_path):
    """Each extra binary dense layer of fcn1 adds < 1/20 of its float32 kernel bytes.

    (Whole-model ratios at the zoo's default sizes: experiments/export/results/sizes.json.)
    """
    sizes = {}
    for depth in (2, 3):
        model = tfdisc.models.build("fcn1", precision="binary", width=256, depth=depth)
        sizes[depth] = os.path.getsize(export.lce(model, str(tmp_path / f"{depth}.tflite")))
    float_layer = 256 * 256 * 4
    binary_layer = sizes[3] - sizes[2]
    assert 0 < 20 * binary_layer <= float_layer, (float_layer, binary_layer)


def _lite_kernels(path):
    """{tensor name: (type name, shape)} of the constant weight tensors of a flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=import-outside-toplevel
    from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=import-outside-toplevel

    model = flatbuffer_utils.read_model(str(path))
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return {t.name.decode(): (types[t.type], list(t.shape))
            for t in model.subgraphs[0].tensors
            if model.buffers[t.buffer].data is not None and len(t.shape) == 2}


@pytest.mark.skipif(not HAVE_LCE, reason="larq-compute-engine not installed (tfdisc[lce])")
def test_lce_int8_float_weights_quarter_the_full_precision_layers(tmp_path):
    """fcn1's float first and last kernels become int8; the binary layers stay bit-packed."""
    model = tfdisc.models.build("fcn1", precision="binary", width=256, depth=4)
    plain = export.lce(model, str(tmp_path / "f32.tflite"))
    small = export.lce(model, str(tmp_path / "int8.tflite"), float_weights="int8")
    assert export.lite_ops(small).get("LceBconv2d") == _binary_layers(model) == 3
    kernels = _lite_kernels(small)
    assert sorted(shape for kind, shape in kernels.values() if kind == "INT8") == [[10, 256],
                                                                                  [256, 784]]
    assert all(kind != "FLOAT32" for kind, _ in kernels.values()), kernels
    saved = os.path.getsize(plain) - os.path.getsize(small)
    float_bytes = (784 * 256 + 256 * 10) * 4
    assert abs(saved - 0.75 * float_bytes) < 0.01 * float_bytes, (saved, float_bytes)


def test_int8_weights_round_to_per_channel_scales(tmp_path):
    """The int8 kernel times its per-output-channel scale is the float kernel to half a step."""
    from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=import-outside-toplevel

    model = tfdisc.models.build("fcn2", precision="full", width=24, depth=2)
    data = open(export.tflite(model, str(tmp_path / "f.tflite")), "rb").read()
    new, report = export.weights.int8_weights(data)
    assert [r["shape"] for r in report] == [[24, 784]]  # 24x24 and 24x10 are under MIN_ELEMENTS
    def kernel(flatbuffer):
        lite = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
        tensor = next(t for t in lite.subgraphs[0].tensors if list(t.shape) == [24, 784])
        return lite.buffers[tensor.buffer].data.tobytes(), tensor.quantization

    q, params = kernel(new)
    q = np.frombuffer(q, np.int8).reshape(24, 784)
    scale = np.asarray(params.scale, np.float32)
    # The converter may fold batch norm into the kernel: compare with its float kernel.
    want = np.frombuffer(kernel(data)[0], np.float32).reshape(24, 784)
    assert scale.shape == (24,) and np.abs(q).max() == 127
    assert np.all(np.abs(q * scale[:, None] - want) <= scale[:, None] / 2 + 1e-7)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f in ("tflite", "lce")])
def test_int8_float_weights_predict_close_to_keras(fmt, tmp_path):
    """Hybrid kernels: per-channel scales are read (a misread scale is off by orders)."""
    model = tfdisc.models.build("fcn2", precision="full", input_bits=2, width=64, depth=3)
    path = export.export(model, str(tmp_path), [fmt], float_weights="int8")[fmt]
    x = _images(model, 64, seed=2)
    want = model(x, training=False).numpy()
    got = export.predictor(path)(x)
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9
    assert os.path.getsize(path) < 0.4 * os.path.getsize(
        export.export(model, str(tmp_path / "f32"), [fmt])[fmt])


def test_uint8_input_takes_raw_pixels(tmp_path):
    model = tfdisc.models.build("alexnet_cifar", precision="binary", input_bits=2, width=8,
                                depth=1, input_shape=(16, 16, 3))
    testing_utils.random_batch_norms(model, seed=7)
    # tflite and packed_saved_model take the same uint8 rewrite as lce and saved_model.
    paths = export.export(model, str(tmp_path), [f for f in FORMATS if f in ("saved_model", "lce")],
                          input_dtype="uint8")
    pixels = np.random.default_rng(2).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    want = model(pixels.astype(np.float32) / 255.0, training=False).numpy()
    for fmt, path in paths.items():
        got = export.predictor(path)(pixels)
        np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1), err_msg=fmt)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(),
                                   err_msg=fmt)
    with open(os.path.join(paths["saved_model"], "assets.extra", "tfdisc_export.json")) as f:
        assert json.load(f)["input_dtype"] == "uint8"


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}, check=False)


def test_saved_model_loads_without_tfdisc_or_larq(zoo, tmp_path):
    model, paths = zoo["alexnet_cifar"]
    x = _images(model, 4, seed=3)
    np.save(tmp_path / "x.npy", x)
    result = _python(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        m = tf.saved_model.load({paths['saved_model']!r})
        y = m.signatures["serving_default"](image=tf.constant(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'y.npy')!r}, y["logits"].numpy())
        assert not [k for k in sys.modules if k.split(".")[0] in ("tfdisc", "larq")]
        """)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_packed_saved_model_without_ops_says_what_to_import(zoo):
    _, paths = zoo["fcn2"]
    path = paths["packed_saved_model"]
    with open(os.path.join(path, "assets.extra", "tfdisc_export.json")) as f:
        # to_packed fuses by default: the binary layers are one Tfdisc>PackedNetwork op.
        assert "Tfdisc>PackedNetwork" in json.load(f)["tfdisc_ops"]
    result = _python(f"import tfdisc.export\ntfdisc.export.load({path!r})",
                     TFDISC_OPS_LIBRARY="/nonexistent/_tfdisc_ops.so")
    assert result.returncode != 0
    assert "import tfdisc.ops" in result.stderr and "Tfdisc>PackedNetwork" in result.stderr, \
        result.stderr[-2000:]


def test_saved_keras_models_load_after_import_tfdisc_only(tmp_path):
    """Issue 7 item 14: larq and packed models load with `import tfdisc` alone."""
    model = tfdisc.models.build("fcn2", precision="binary", width=32, depth=2)
    testing_utils.random_batch_norms(model, seed=5)
    model.save(tmp_path / "model.keras")
    convert.to_packed(model).save(tmp_path / "packed.keras")
    x = _images(model, 4, seed=4)
    np.save(tmp_path / "x.npy", x)
    result = _python(f"""
        import sys
        import numpy as np
        import tfdisc
        import tensorflow as tf
        assert "tfdisc.ops" not in sys.modules
        x = np.load({str(tmp_path / 'x.npy')!r})
        for name in ("model", "packed"):
            m = tf.keras.models.load_model({str(tmp_path)!r} + f"/{{name}}.keras")
            np.save({str(tmp_path)!r} + f"/{{name}}.npy", m(x).numpy())
        """)
    assert result.returncode == 0, result.stderr[-3000:]
    want = model(x, training=False).numpy()
    for name in ("model", "packed"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), want, rtol=1e-5,
                                   atol=1e-5)
        loaded = export.load(str(tmp_path / f"{name}.keras"))
        np.testing.assert_allclose(loaded(x).numpy(), want, rtol=1e-5, atol=1e-5)


class _Fft(tf.keras.layers.Layer):
    def call(self, inputs):  # tf.Complex and tf.FFT have no TFLite builtin
        return tf.math.real(tf.signal.fft(tf.complex(inputs, inputs)))


class TestErrors:
    def test_keras3_model(self, tmp_path):
        import keras  # pylint: disable=import-outside-toplevel

        k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        for fn in (export.saved_model, export.tflite, export.packed_saved_model):
            with pytest.raises(ValueError, match="Keras 3"):
                fn(k3, str(tmp_path / "x"))

    def test_packed_model_to_stock_formats(self, tmp_path):
        packed = convert.to_packed(tfdisc.models.build("fcn2", precision="binary", width=8,
                                                       depth=2))
        with pytest.raises(ValueError, match="packed_network.*packed layers"):
            export.tflite(packed, str(tmp_path / "m.tflite"))

    def test_op_outside_tflite_builtins_names_the_layer(self, tmp_path):
        inputs = tf.keras.Input((4,))
        model = tf.keras.Model(inputs, _Fft()(inputs))
        with pytest.raises(ValueError, match=r"(?s)_Fft.*tf.Complex"):
            export.tflite(model, str(tmp_path / "m.tflite"))

    def test_uint8_needs_the_quantizer_first(self, tmp_path):
        model = tf.keras.Sequential([tf.keras.layers.InputLayer((4,)), tf.keras.layers.Dense(2)])
        with pytest.raises(ValueError, match="BitDepthQuantization"):
            export.saved_model(model, str(tmp_path / "sm"), input_dtype="uint8")

    def test_bad_format_and_dtype_and_path(self, tmp_path):
        model = tfdisc.models.build("fcn2", width=8, depth=2)
        with pytest.raises(ValueError, match="onnx"):
            export.export(model, str(tmp_path), ["onnx"])
        with pytest.raises(ValueError, match="input_dtype"):
            export.saved_model(model, str(tmp_path / "sm"), input_dtype="int8")
        with pytest.raises(FileNotFoundError):
            export.load(str(tmp_path / "missing.keras"))
        with pytest.raises(ValueError, match="unknown artifact"):
            export.load(__file__)
        with pytest.raises(ValueError, match="float_weights"):
            export.tflite(model, str(tmp_path / "m.tflite"), float_weights="int4")
        with pytest.raises(ValueError, match="float_weights"):
            export.export(model, str(tmp_path), ["lce"], float_weights="float16")
        with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
            export.weights.int8_weights(b"not a flatbuffer")

    def test_lce_missing_names_the_extra(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "larq_compute_engine", None)
        model = tfdisc.models.build("fcn2", precision="binary", width=8, depth=2)
        with pytest.raises(ImportError, match=r"tfdisc\[lce\]"):
            export.lce(model, str(tmp_path / "m.tflite"))


def test_command_line(tmp_path):
    model = tfdisc.models.build("fcn2", precision="binary", width=16, depth=2)
    model.save(tmp_path / "model.keras")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "tfdisc.export", f"--model={tmp_path / 'model.keras'}",
         "--formats=tflite", f"--output_dir={out}", "--check_images=4"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "argmax agreement 1.000" in result.stdout
    assert "4 uniform-noise images (NOT real data" in result.stdout  # issue 26: noise is labelled
    assert (out / "model.tflite").exists()


def test_experiment_binary_export_flag(mnist_dir, tmp_path):
    from tfdisc.experiments import mnist  # pylint: disable=import-outside-toplevel

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(model="fcn2", precision="binary", bits=2, width=16, depth=2,
                             epochs=1, train_limit=512, test_limit=64, verbose="0",
                             epsilons=["0.1"], data_dir=mnist_dir, output_dir=str(tmp_path),
                             export=["tflite"]):
        mnist.main(["mnist"])
    model = export.load(str(tmp_path / "model.keras"))
    x = _images(model, 4, seed=5)
    want = model(x, training=False).numpy()
    got = export.predictor(str(tmp_path / "export" / "model.tflite"))(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
