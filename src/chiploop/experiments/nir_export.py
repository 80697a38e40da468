"""A trained spiking network as a NIR graph (Pedersen et al. 2024, "Neuromorphic intermediate
representation: a unified instruction set for interoperable brain-inspired computing", Nat. Commun.
15:8122), the format that carries networks between simulators (snnTorch, Norse, Lava, ...) and chips.

Nodes, with the run's exact weights (float32, as saved) and parameters::

    input (Input, n_in) -> W_in (Linear) -> hidden (LIF) -> W_out (Linear) -> output (LIF) -> out (Output)
    hidden -> inhibition (Linear, -w_inh (1 - I)) -> hidden           (lateral inhibition)
    output -> inhibition_out (Linear, -w_inh,out (1 - I)) -> output   (output inhibition; zeros when off)

LIF nodes: NIR's ``τ dv/dt = (v_leak - v) + R I`` with ``tau`` in s, ``r`` in MΩ, ``v_leak``, ``v_reset`` and
``v_threshold = v_th + θ`` in mV (currents in nA). What NIR has no field for is in the graph's metadata:
the time step, the refractory period, the one-step delay of the inhibition and the spike-count readout.
NIR carries no plasticity: the rule card carries the rule (``loihi``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from chiploop.emulator.networks import SNN
from chiploop.experiments.results import write_atomic


def snn_graph(network: SNN):
    """The NIR graph of ``network`` (exact copies of its weights and parameters)."""
    import nir

    p = network.neuron
    W = {name: network.chip.crossbars[name].weights().detach().cpu().numpy().astype(np.float32)
         for name in network.weight_names}

    def lif(name: str, n: int):
        theta = network.chip.biases[name].detach().cpu().numpy().astype(np.float64)
        full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
        return nir.LIF(tau=full(p.tau_m / 1000.0), r=full(p.r_m), v_leak=full(p.v_rest),
                       v_threshold=p.v_th + theta, v_reset=full(p.v_reset))

    def inhibition(w: float, n: int):
        return nir.Linear(weight=(-w * (np.ones((n, n)) - np.eye(n))).astype(np.float32))

    nodes = {"input": nir.Input(input_type={"input": np.array([network.n_in])}),
             "W_in": nir.Linear(weight=W["W_in"]), "hidden": lif("W_in", network.hidden),
             "inhibition": inhibition(network.inhibition, network.hidden),
             "inhibition_out": inhibition(network.inhibition_out, network.n_out),
             "W_out": nir.Linear(weight=W["W_out"]), "output": lif("W_out", network.n_out),
             "out": nir.Output(output_type={"output": np.array([network.n_out])})}
    edges = [("input", "W_in"), ("W_in", "hidden"), ("hidden", "inhibition"), ("inhibition", "hidden"),
             ("hidden", "W_out"), ("W_out", "output"), ("output", "inhibition_out"), ("inhibition_out", "output"),
             ("output", "out")]
    metadata: dict[str, Any] = {
        "producer": "chiploop", "dt_ms": p.dt, "t_ref_ms": p.t_ref, "units": "tau s, r MOhm, v mV, I nA",
        "inhibition_delay_steps": 1, "readout": "spike count of output (argmax)", "integration": "exact (exp)"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(network: SNN, path: str | Path) -> Any:
    """Write ``network``'s graph to ``path`` (HDF5, atomically); returns the graph."""
    import nir

    graph = snn_graph(network)
    buf = io.BytesIO()
    nir.write(buf, graph)
    write_atomic(path, buf.getvalue())
    return graph


def export_nir(run_dir: str | Path, path: str | Path) -> Any:
    """Write the trained spiking network of ``run_dir`` (its ``weights.npz``) to ``path`` as NIR."""
    from chiploop.experiments.card import read_run
    from chiploop.experiments.weights import load_layout, load_weights, shadow_from_weights
    from chiploop.specs import SpecError

    run = read_run(run_dir)
    if run.spec.model.kind != "snn":
        raise SpecError("--nir", str(run_dir), f"a run of a spiking network (model.kind: snn); this run's model "
                        f"is {run.spec.model.kind}")
    weights = Path(run_dir) / "weights.npz"
    network = shadow_from_weights(load_weights(weights), load_layout(weights), run.spec.model)
    return write_nir(network, path)
