"""Networks that run on a chip: the abstract :class:`Network` and its final subclasses, registered
by kind in ``NETWORKS`` (``model: {kind: mlp, ...}`` in a spec)."""

from chiploop.emulator.networks.base import NETWORKS, Network, NetworkSpec, Perturbation, Trace, register
from chiploop.emulator.networks.mlp import MLP, MLPSpec, init_weights
from chiploop.emulator.networks.rnn import RNN, RNNSpec
from chiploop.emulator.networks.snn import SNN, SNNSpec

__all__ = ["MLP", "MLPSpec", "NETWORKS", "RNN", "RNNSpec", "SNN", "SNNSpec", "Network", "NetworkSpec", "Perturbation", "Trace", "init_weights",
           "register"]
