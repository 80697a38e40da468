"""Composition (optax's chain test): ``chain(rule, a, b)`` equals running the rule, then ``a`` on its
signals, then ``b`` on theirs, by hand; the state is one entry per part; the order is the one written."""

import torch

from chiploop.emulator import MLP
from chiploop.learning import Backprop, Chain, Loss, chain, decorrelate, inject, make_rule


def problem():
    gen = torch.Generator().manual_seed(0)
    net = MLP.build((10, 12, 4), "tanh", None, gen)
    return net, (torch.randn(16, 10, generator=gen), torch.randint(0, 4, (16,), generator=gen)), Loss("cross_entropy")


def same(a, b):
    return [s.name for s in a] == [s.name for s in b] and all(
        torch.equal(x.x, y.x) and torch.equal(x.d, y.d) and x.lr == y.lr for x, y in zip(a, b))


def test_chained_equals_applying_one_transform_then_the_other_by_hand():
    net, batch, loss = problem()
    rule, decor, noise = make_rule("node_perturbation", {"sigma": 0.01}), decorrelate(eta=0.01), inject(variance=0.5)
    chained = chain(rule, decor, noise)
    net.chip.install(chained.crossbars(net, torch.Generator().manual_seed(1)))
    state = chained.init(net, torch.Generator().manual_seed(2))
    assert isinstance(state, tuple) and len(state) == 3
    trace = net.unroll(batch[0])
    got, new_state = chained.signals(net, trace, batch, loss, state)

    gen = torch.Generator().manual_seed(2)  # the same draws as chained.init: one per part, in order
    s0, s1, s2 = rule.init(net, gen), decor.init(net, gen), noise.init(net, gen)
    by_hand, _ = rule.signals(net, trace, batch, loss, s0)
    by_hand, _ = decor.update(net, trace, batch, loss, by_hand, s1)
    by_hand, _ = noise.update(net, trace, batch, loss, by_hand, s2)
    assert same(got, by_hand)
    assert [s.name for s in got] == ["layer0", "layer1", "decorr/layer0", "decorr/layer1"]
    assert len(new_state) == 3


def test_the_order_is_the_one_written():
    net, batch, loss = problem()
    trace = net.unroll(batch[0])
    scale, noise = inject(bias=0.5), inject(variance=2.0)
    ab, ba = chain(Backprop(), scale, noise), chain(Backprop(), noise, scale)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    out_ab, _ = ab.signals(net, trace, batch, loss, ab.init(net, gen()))
    out_ba, _ = ba.signals(net, trace, batch, loss, ba.init(net, gen()))
    assert not same(out_ab, out_ba)  # adding bias then noise scaled to the biased norm is another estimate


def test_chain_of_a_rule_alone_is_the_rule_and_flags_combine():
    rule = Backprop()
    assert chain(rule) is rule and chain(rule, None) is rule
    assert chain(rule, decorrelate()).deterministic and not chain(rule, inject(variance=1.0)).deterministic
    assert not chain(make_rule("node_perturbation"), decorrelate()).deterministic
    assert isinstance(chain(rule, decorrelate()), Chain)
    try:
        chain(rule, Backprop())
    except TypeError as err:
        assert "not a Transform" in str(err)
    else:
        raise AssertionError("a rule in a transform's place must be refused")
