"""8-bit weights for the full-precision layers of a TFLite or LCE flatbuffer.

A BNN keeps its first and last layers in full precision. In a wide MLP the
first layer dominates the file once the others are bit-packed: fcn1's
784 x 6144 float32 kernel is 18.4 MiB, more than the three binary 6144 x 6144
layers together (13.5 MiB of bits). :func:`int8_weights` stores the float
kernels of ``FULLY_CONNECTED`` and ``CONV_2D`` ops as int8 with one symmetric
scale per output channel. TFLite then runs those ops with its *hybrid*
kernels (the ones of its dynamic-range quantization): activations stay
float32, the input of the op is quantized on the fly, and the output is
float32 again, so the rest of the graph (the input quantizer, LCE's binary
ops, batch norm) is untouched.

This is what ``tf.lite.Optimize.DEFAULT`` does for a stock TFLite model; LCE
0.16's ``convert_keras_model`` has no such option, hence this rewrite of the
flatbuffer it writes. The weights are rounded, so logits move (measured in
``experiments/export/README.md``); the binary layers are exact either way.
"""
import numpy as np

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

__all__ = ["FLOAT_WEIGHTS", "MIN_ELEMENTS", "int8_weights"]

#: Storage choices of the full-precision layers' weights.
FLOAT_WEIGHTS = ("float32", "int8")
#: Kernels smaller than this stay float32 (as in TFLite's own dynamic-range
#: quantization, where the quantization error is not worth a few bytes).
MIN_ELEMENTS = 1024

# Op -> index of its weight input. Both keep the output channel on axis 0
# (FULLY_CONNECTED: [out, in]; CONV_2D: [out, h, w, in]), which is the
# axis of the per-channel scales the hybrid kernels read.
_WEIGHT_INPUT = {
    schema.BuiltinOperator.FULLY_CONNECTED: 1,
    schema.BuiltinOperator.CONV_2D: 1,
}


def _builtin_code(opcode):
    # Schema v3a: the operator is the larger of the deprecated 8-bit field
    # and the 32-bit field.
    return max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))


def _quantize(kernel):
    """Symmetric per-output-channel int8: ``kernel ≈ q * scale[channel]``."""
    flat = kernel.reshape(kernel.shape[0], -1)
    scale = np.abs(flat).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # all-zero channel: any scale
    q = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(kernel.shape), scale


def int8_weights(data, *, min_elements=MIN_ELEMENTS):
    """Rewrites a flatbuffer so its float ``FULLY_CONNECTED``/``CONV_2D`` kernels are int8.

    Args:
      data: The flatbuffer (``bytes``), stock TFLite or LCE.
      min_elements: Kernels with fewer elements stay float32.

    Returns:
      ``(new_data, report)``: the rewritten flatbuffer and a list with one
      ``{"op", "tensor", "shape", "float_bytes", "int8_bytes"}`` per kernel it
      rewrote (empty when there was none; ``new_data`` is then ``data``).

    Raises:
      ValueError: `data` is not a TFLite flatbuffer.
    """
    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f"int8_weights: not a TFLite flatbuffer ({e}).") from e
    if not model.subgraphs:
        raise ValueError("int8_weights: the flatbuffer has no subgraph.")
    uses = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            uses[tensor.buffer] = uses.get(tensor.buffer, 0) + 1
    report = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = _builtin_code(model.operatorCodes[op.opcodeIndex])
            if code not in _WEIGHT_INPUT or len(op.inputs) <= _WEIGHT_INPUT[code]:
                continue
            index = op.inputs[_WEIGHT_INPUT[code]]
            tensor = subgraph.tensors[index]
            buffer = model.buffers[tensor.buffer]
            if (tensor.type != schema.TensorType.FLOAT32 or buffer.data is None
                    or uses[tensor.buffer] != 1):
                continue  # an activation, already quantized, or shared
            shape = [int(d) for d in tensor.shape]
            kernel = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.float32)
            if kernel.size < min_elements or kernel.size != int(np.prod(shape)):
                continue
            q, scale = _quantize(kernel.reshape(shape))
            buffer.data = np.frombuffer(q.tobytes(), np.uint8)
            tensor.type = schema.TensorType.INT8
            params = schema.QuantizationParametersT()
            params.scale = scale.tolist()
            params.zeroPoint = [0] * len(scale)
            params.quantizedDimension = 0
            tensor.quantization = params
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            report.append({
                "op": "FULLY_CONNECTED" if code == schema.BuiltinOperator.FULLY_CONNECTED
                else "CONV_2D",
                "tensor": name, "shape": shape,
                "float_bytes": int(kernel.nbytes), "int8_bytes": int(q.nbytes)})
    if not report:
        return bytes(data), report
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), report
