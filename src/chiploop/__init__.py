"""chiploop: train neural networks on emulated analog crossbar chips and see what the chip did
to the gradient.

The package root holds the version only: it imports nothing, so ``import chiploop`` stays light
(no torch, no aihwkit) and no layer above can be reached from it. Rule cards are read with
:func:`chiploop.experiments.card.load_card`.
"""

__version__ = "0.1.0"
