"""to_packed(fused=True): each chain of packed layers as one op, bit-identical to the
per-layer packed model for every zoo family, batch size and kernel, and it saves."""
import os
import threading

import numpy as np
import pytest
import tensorflow as tf

import tfdisc
from tfdisc import convert, export
from tests import testing_utils

ops = pytest.importorskip("tfdisc.ops", reason="op library unavailable", exc_type=ImportError)

# Every zoo family, tiny (as tests/export_test.py).
ZOO = {
    "fcn1": dict(width=64, depth=3),
    "fcn2": dict(width=48, depth=3),
    "alexnet_cifar": dict(width=8, depth=1, input_shape=(16, 16, 3)),
    "cnn_small": dict(width=8, input_shape=(16, 16, 3)),
    "resnet20": dict(width=8, input_shape=(16, 16, 3)),
    "alexnet": dict(width=12, depth=1, input_shape=(32, 32, 3), num_classes=10),
}
KERNELS = [k for k in ("reference", "portable", "avx2", "avx512bw", "avx512", "neon")
           if ops.kernel_supported(k)]
BATCHES = (1, 3, 17)  # 17: the dense layers' transposed path (>= 16 rows), odd pairs


def _images(shape, n, seed):
    return np.random.default_rng(seed).random((n, *shape[1:])).astype(np.float32)


@pytest.fixture(scope="module")
def zoo():
    """{family: (per-layer packed model, fused model)}."""
    out = {}
    for i, (name, kwargs) in enumerate(sorted(ZOO.items())):
        tf.keras.utils.set_random_seed(i)
        model = tfdisc.models.build(name, precision="binary", input_bits=2, **kwargs)
        testing_utils.random_batch_norms(model, seed=i)
        out[name] = (convert.to_packed(model, fused=False, warn=False),
                     convert.to_packed(model, fused=True, warn=False))
    return out


def test_zoo_covers_every_family():
    assert sorted(ZOO) == tfdisc.models.available()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_fused_equals_per_layer_bit_for_bit(zoo, name, kernel):
    per_layer, fused = zoo[name]
    report = fused.packing_report
    assert report.fused_networks
    assert not any(isinstance(l, (convert.PackedBinaryConv2D, convert.PackedBinaryDense))
                   for l in fused.layers)  # every packed layer is inside a PackedNetwork
    # Eager against eager and graph against graph: the float layers outside the fused
    # ops (resnet20's shortcut convolutions and adds) may round differently in a graph
    # (Grappler's fusions, thread splits) than eagerly.
    run_fused = tf.function(lambda x: fused(x, training=False))
    run_per_layer = tf.function(lambda x: per_layer(x, training=False))
    with ops.use_kernel(kernel):
        for batch in BATCHES:
            x = _images(per_layer.input_shape, batch, seed=batch)
            np.testing.assert_array_equal(fused(x).numpy(), per_layer(x).numpy(),
                                          err_msg=f"eager {batch}")
            np.testing.assert_array_equal(run_fused(x).numpy(), run_per_layer(x).numpy(),
                                          err_msg=f"graph {batch}")


def test_alexnet_cifar_is_one_op_between_quantizer_and_logits(zoo):
    _, fused = zoo["alexnet_cifar"]
    assert [type(l).__name__ for l in fused.layers] == [
        "InputLayer", "PackedBitDepthQuantization", "PackedNetwork", "Dense"]
    x = tf.constant(_images(fused.input_shape, 1, seed=0))
    graph = tf.function(lambda v: fused(v)).get_concrete_function(x).graph
    assert [n.type for n in graph.get_operations()].count("Tfdisc>PackedNetwork") == 1
    assert not [n.type for n in graph.get_operations()
                if n.type in ("Tfdisc>BinaryConv2D", "Tfdisc>BinaryDense")]
    # Two weight reads, not one per weight.
    layer = fused.get_layer("packed_network")
    assert len(layer.weights) == 2


@pytest.mark.parametrize("options", [dict(word_bits=64), dict(bitpacked_outputs=False),
                                     dict(fold_batch_norm=False)],
                         ids=["word_bits_64", "float_outputs", "no_folding"])
def test_options(options):
    model = tfdisc.models.build("alexnet_cifar", precision="xnor", width=32, depth=1,
                                input_shape=(8, 8, 3))
    testing_utils.random_batch_norms(model, seed=4)
    per_layer = convert.to_packed(model, fused=False, warn=False, **options)
    fused = convert.to_packed(model, fused=True, warn=False, **options)
    assert fused.packing_report.fused_networks
    for batch in (1, 4):
        x = _images(model.input_shape, batch, seed=batch)
        np.testing.assert_array_equal(fused(x).numpy(), per_layer(x).numpy())


def test_default_and_summary():
    model = tfdisc.models.build("fcn2", precision="binary", width=16, depth=2)
    packed = convert.to_packed(model)
    assert bool(packed.packing_report.fused_networks) == convert.FUSED_DEFAULT
    fused = convert.to_packed(model, fused=True)
    assert "fused into one op each: 1 chains of 2 layers" in fused.packing_report.summary()


def test_changed_weights_are_prepared_again(zoo):
    """The op keeps prepared weights across calls; new weights must be seen, eager and
    in a graph (a variable update gives the weights a new buffer: copy-on-write)."""
    per_layer, fused = zoo["alexnet_cifar"]
    layer = fused.get_layer("packed_network")
    run = tf.function(lambda v: fused(v))
    x = _images(fused.input_shape, 2, seed=7)
    before = run(x).numpy()
    old = layer.get_weights()
    rng = np.random.default_rng(0)
    words = rng.integers(-2**31, 2**31, old[0].shape, dtype=np.int64).astype(np.int32)
    layer.set_weights([words, old[1]])
    changed_graph, changed_eager = run(x).numpy(), fused(x).numpy()
    layer.set_weights(old)
    np.testing.assert_array_equal(changed_graph, changed_eager)
    assert not np.array_equal(changed_graph, before)
    np.testing.assert_array_equal(run(x).numpy(), tf.function(per_layer)(x).numpy())


def test_concurrent_calls(zoo):
    """One op instance, several threads, different batch sizes: each its own buffers."""
    _, fused = zoo["alexnet_cifar"]
    run = tf.function(lambda v: fused(v), reduce_retracing=True)
    inputs = [_images(fused.input_shape, b, seed=b) for b in (1, 2, 5, 9)]
    wants = [run(x).numpy() for x in inputs]  # one call at a time first
    errors = []

    def work(x, want):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(run(x).numpy(), want)
        except Exception as e:  # pylint: disable=broad-except
            errors.append(e)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(inputs, wants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_saves_and_loads_keras(zoo, tmp_path):
    _, fused = zoo["cnn_small"]
    fused.save(tmp_path / "fused.keras")
    loaded = tf.keras.models.load_model(tmp_path / "fused.keras")
    layer = loaded.get_layer("packed_network")
    assert isinstance(layer, convert.PackedNetwork)
    assert layer.fused_layers == list(fused.get_layer("packed_network").fused_layers)
    x = _images(fused.input_shape, 3, seed=5)
    np.testing.assert_array_equal(loaded(x).numpy(), fused(x).numpy())


@pytest.mark.parametrize("name", ["alexnet_cifar", "resnet20"])
def test_saves_and_loads_as_packed_saved_model(zoo, name, tmp_path):
    """As tests/export_test.py does for the per-layer model: the SavedModel runs the op."""
    _, fused = zoo[name]
    path = export.packed_saved_model(fused, str(tmp_path / "sm"))
    with open(os.path.join(path, "assets.extra", "tfdisc_export.json")) as f:
        assert "Tfdisc>PackedNetwork" in f.read()
    x = _images(fused.input_shape, 4, seed=6)
    np.testing.assert_array_equal(export.predictor(path)(x), fused(x).numpy())
    loaded = export.load(path)
    np.testing.assert_array_equal(
        loaded.signatures["serving_default"](image=tf.constant(x))["logits"].numpy(),
        fused(x).numpy())


def test_sequential_model_fuses():
    """A Sequential model is rebuilt as a Sequential model with the chain as one layer."""
    import larq as lq  # pylint: disable=import-outside-toplevel

    def quant_conv(filters, **kwargs):
        return lq.layers.QuantConv2D(filters, 3, input_quantizer="ste_sign",
                                     kernel_quantizer="ste_sign", use_bias=False,
                                     kernel_constraint="weight_clip", **kwargs)

    model = tf.keras.Sequential([
        tf.keras.layers.InputLayer((9, 9, 5)),
        quant_conv(33, padding="same", pad_values=1.0),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.MaxPool2D(2),
        quant_conv(64, padding="valid"),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.GlobalAveragePooling2D(),
    ])
    testing_utils.random_batch_norms(model, seed=8)
    per_layer = convert.to_packed(model, fused=False)
    fused = convert.to_packed(model, fused=True)
    assert isinstance(fused, tf.keras.Sequential)
    assert [type(l).__name__ for l in fused.layers] == ["PackedNetwork", "GlobalAveragePooling2D"]
    x = np.random.default_rng(2).standard_normal((3, 9, 9, 5)).astype(np.float32)
    np.testing.assert_array_equal(fused(x).numpy(), per_layer(x).numpy())


@pytest.mark.parametrize("min_cost", ["0", "1000000000"], ids=["all_parallel", "all_serial"])
def test_thread_choice_does_not_change_outputs(zoo, min_cost, monkeypatch):
    """TFDISC_OPS_FUSED_PARALLEL_COST moves every step onto the intra-op pool (0) or onto the
    calling thread; the outputs stay the per-layer model's."""
    monkeypatch.setenv("TFDISC_OPS_FUSED_PARALLEL_COST", min_cost)
    for name in ("alexnet_cifar", "resnet20"):
        per_layer, fused = zoo[name]
        x = _images(per_layer.input_shape, 5, seed=11)
        np.testing.assert_array_equal(fused(x).numpy(), per_layer(x).numpy(), err_msg=name)
