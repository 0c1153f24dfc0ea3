"""One model step as an ONNX graph, for runtimes that execute it faster than PyTorch at batch 1.

At batch 1 on a CPU a step is about a hundred tiny ops, and the time goes to dispatching them,
not to arithmetic: TorchScript spends ~4 us per op, ONNX Runtime ~2 us per node (measured on
the pendulum model: 0.54 vs 0.16 ms per step; BENCHMARKS.md, "Step latency"). The graph is
`model.step(..., check=False)` exactly (`step_graph.FlatStep`, on the step contract), with the
weights folded in as constants: a snapshot, like `compile_step`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch

from rkn_ros.core.model import SequenceModel
from rkn_ros.core.step_graph import flat_step

# Opset 17 has LayerNormalization (the encoders' one-group norm exports as one node) and is
# supported by every ONNX Runtime since 1.13.
ONNX_OPSET = 17


@dataclass(frozen=True)
class OnnxStep:
    """A serialized ONNX step graph and the meaning of its inputs and outputs.

    Inputs of a whole step, in order: `state_0..state_{n-1}` (the model's state tensors), then
    per sensor `obs_<name>` [batch, *shape] float and `valid_<name>` [batch] bool, then
    `action` [batch, action_dim] and `dt` [batch, 1] where the model takes them. Outputs:
    `next_state_0..next_state_{n-1}`, `mean` and `var` [batch, output_dim]. The parts of a
    split step name theirs as `FlatStep` says. Every shape is fixed at `batch_size`.
    """

    model: bytes
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_len: int
    batch_size: int


def export_step_onnx(model: SequenceModel, batch_size: int = 1, part: str = "step") -> OnnxStep:
    """Export `model.step(..., check=False)`, or its "update" or "advance" part (`FlatStep`),
    for a fixed batch size (needs the `onnx` package).

    Same inputs contract as `compile_step`: zeros (not NaN) in missing samples, finite values.
    Raises RuntimeError naming the cause when the model cannot be exported.
    """
    flat, example = flat_step(model, batch_size, part)
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript-based exporter is the one that exports this graph in well
            # under a second; torch 2.13's default (torch.export-based) one takes ~7 s and
            # leaves the weight-only band basis unfolded. Its deprecation and tracer notes
            # say nothing about this model (the trace has no value-dependent branch).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # (its batch-size note on LSTM/GRU: the states are inputs, the batch size fixed)
            warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size",
                                    UserWarning)
            torch.onnx.export(flat, example, buffer, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=flat.input_names, output_names=flat.output_names,
                              do_constant_folding=True)
    except Exception as err:  # the exporter raises many types; the caller needs one
        raise RuntimeError(f"ONNX export of the {model.config.kind} step failed: "
                           f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
    return OnnxStep(buffer.getvalue(), tuple(flat.input_names), tuple(flat.output_names),
                    flat.state_len, batch_size)
