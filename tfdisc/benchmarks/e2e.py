"""Whole networks: tfdisc.convert.to_packed(model) against the larq model and LCE.

The ``e2e`` section of ``python -m tfdisc.benchmarks.ops``: fcn1, fcn2 and
alexnet_cifar (binary, random weights) packed with ``to_packed``, each kernel
forced in turn, against the same larq model, both in a ``tf.function``, and
against the larq-compute-engine interpreter at batch 1 when it is installed.
Each kernel has two lines: the per-layer graph (``fused=False``) and the fused
one (``fused=True``: each chain of packed layers as one op, issue 31), timed
side by side; the fused line also says whether its outputs equal the
per-layer graph's bit for bit, and for networks with binary convolutions its
time against those convolutions' time at the kernel's roofline (issue 31's
target: at most 2x at alexnet_cifar batch 1). Every line also gives the argmax
agreement between packed and larq outputs.
"""
import os

import numpy as np
import tensorflow as tf

import tfdisc
from tfdisc import convert
from tfdisc.benchmarks import timing
from tfdisc.benchmarks.marks import target_mark


def _usable_cores():
    """Cores this process may run on (its affinity, as TensorFlow counts them), so that a
    run pinned to fewer cores (taskset) does not give LCE more threads than cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def _lce_predictor(model, report):
    """A batch-1 predict function on larq-compute-engine, or None."""
    try:
        # pylint: disable=import-outside-toplevel
        import larq_compute_engine as lce
        from larq_compute_engine.tflite.python.interpreter import Interpreter
    except ImportError:
        report("    (larq-compute-engine not installed: pip install tfdisc[lce])")
        return None
    try:
        flatbuffer = lce.convert_keras_model(model)
        interpreter = Interpreter(flatbuffer, num_threads=_usable_cores())
    except Exception as e:  # pylint: disable=broad-except
        report(f"    (larq-compute-engine {getattr(lce, '__version__', '')} could not "
               f"convert {model.name}: {type(e).__name__}: {e})")
        return None
    return interpreter.predict


def binary_conv_macs(model, batch):
    """Binary multiply-accumulates of `model`'s larq QuantConv2D layers at `batch`."""
    import larq as lq  # pylint: disable=import-outside-toplevel

    total = 0
    for layer in model.layers:
        if isinstance(layer, lq.layers.QuantConv2D) and layer.input_quantizer is not None:
            _, h, w, c = layer.output_shape
            kh, kw = layer.kernel_size
            total += batch * h * w * c * kh * kw * layer.input_shape[-1]
    return total


FUSED = " fused"


def e2e(report, quick, rounds, min_round_s, use_lce, kernels, summary, auto, targets,
        ceilings=None):
    """Each network packed (each kernel, per layer and fused) against larq in tf.function,
    and LCE at batch 1.

    ``auto`` is the kernel 'auto' picks on the CPU measured; ``targets`` maps
    ("e2e", name, batch) and ("e2e-lce",) to target ratios (None when quick);
    ``ceilings`` (the roofline section's, or None) gives each kernel's binary MAC/s.
    """

    # (name, build kwargs, batches, run LCE). LCE 0.16's converter fails on
    # fcn1 (450 MiB of float weights: "cannot create std::vector larger than
    # max_size()" or a segfault), so it is not attempted there.
    cases = [("fcn1", {}, (256, 1), False), ("fcn2", {}, (256, 1), True),
             ("alexnet_cifar", {}, (1, 32), True)]
    if quick:
        cases = [("fcn2", dict(width=64, depth=2), (8, 1), True),
                 ("alexnet_cifar", dict(width=16, depth=1, input_shape=(16, 16, 3)), (1,),
                  True)]
    report("== e2e: to_packed(model) (each kernel) vs the larq model, both in tf.function ==")
    rng = np.random.default_rng(2)
    for name, kwargs, batches, try_lce in cases:
        model = tfdisc.models.build(name, precision="binary", **kwargs)
        packed = convert.to_packed(model, fused=False)
        fused = convert.to_packed(model, fused=True)
        r = packed.packing_report
        report(f"  {name}: {len(r.packed_layers)} packed layers, {len(r.bitpacked_outputs)} "
               f"with bit outputs; weights {r.float_bytes / 2**20:.2f} MiB float -> "
               f"{r.packed_bytes / 2**20:.2f} MiB ({r.compression:.1f}x; binary layers "
               f"{r.binary_float_bytes / max(r.binary_packed_bytes, 1):.1f}x)")
        report(f"    fused: {len(fused.packing_report.fused_networks)} PackedNetwork op(s) for "
               f"{sum(len(n) for _, n in fused.packing_report.fused_networks)} layers")
        larq_fn = tf.function(lambda v, m=model: m(v, training=False))
        packed_fn = tf.function(lambda v, m=packed: m(v, training=False))
        fused_fn = tf.function(lambda v, m=fused: m(v, training=False))
        lce_predict = _lce_predictor(model, report) if use_lce and try_lce else None
        if use_lce and not try_lce:
            report("    (larq-compute-engine not run: its converter fails on this model)")
        for batch in batches:
            x = tf.constant(rng.random((batch, *model.input_shape[1:])).astype(np.float32))
            want = np.argmax(larq_fn(x).numpy(), -1)
            candidates = {"larq": lambda: timing.sync(larq_fn(x))}
            agree, same = {}, {}
            for kernel in kernels:
                run = timing.forced(kernel, lambda: timing.sync(packed_fn(x)))
                logits = run()
                agree[kernel] = float(np.mean(np.argmax(logits, -1) == want))
                candidates[kernel] = run
                run = timing.forced(kernel, lambda: timing.sync(fused_fn(x)))
                fused_logits = run()
                agree[kernel + FUSED] = float(np.mean(np.argmax(fused_logits, -1) == want))
                same[kernel] = np.array_equal(np.asarray(fused_logits), np.asarray(logits))
                candidates[kernel + FUSED] = run
            if lce_predict is not None and batch == 1:
                xn = x.numpy()
                candidates["lce"] = lambda: lce_predict(xn)
            times = timing.compare(candidates, rounds, min_round_s)
            head = f"    batch {batch:3d}: larq {timing.fmt_ms(times['larq'])}"
            if "lce" in times:
                head += f" | lce {timing.fmt_ms(times['lce'])}"
            report(head)
            conv_macs = binary_conv_macs(model, batch)
            for kernel in kernels:
                for cand in (kernel, kernel + FUSED):
                    ratio = times["larq"] / times[cand]
                    key = ("e2e-fused" if cand != kernel else "e2e", name, batch)
                    target = None if quick else targets.get(key, targets.get(("e2e", name,
                                                                                batch)))
                    auto_mark = " (auto)" if kernel == auto else "       "
                    line = (f"      kernel {cand:15s}{auto_mark} "
                            f"{timing.fmt_ms(times[cand])} {ratio:6.1f}x larq"
                            + target_mark(ratio, target))
                    label = f"e2e {name} batch {batch}{' fused' if cand != kernel else ''}"
                    summary.setdefault(kernel, {})[f"{label} vs larq"] = (ratio, None, target)
                    if "lce" in times:
                        lratio = times["lce"] / times[cand]
                        ltarget = (targets[("e2e-lce",)]
                                   if name == "alexnet_cifar" and not quick else None)
                        line += f" | {lratio:6.1f}x lce" + target_mark(lratio, ltarget)
                        summary[kernel][f"{label} vs lce"] = (lratio, None, ltarget)
                    line += f" | argmax agreement {100 * agree[cand]:.0f}%"
                    if cand != kernel:
                        line += (f" | {times[kernel] / times[cand]:4.2f}x per-layer, outputs "
                                 f"{'bit-identical' if same[kernel] else 'DIFFER'}")
                        if conv_macs and ceilings and kernel in ceilings:
                            floor = conv_macs / ceilings[kernel]
                            share = times[cand] / floor
                            ctarget = (targets.get(("e2e-fused-conv", name, batch))
                                       if not quick else None)
                            line += (f" | {share:4.1f}x the binary convs at roofline "
                                     f"({floor * 1e3:.2f} ms)")
                            if ctarget is not None:
                                line += (f" [target <= {ctarget:g}x: "
                                         f"{'met' if share <= ctarget else 'MISSED'}]")
                    report(line)
    report()
