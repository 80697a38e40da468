"""A chip server under load and on a pulsed device: 4 concurrent clients x 2,000 verb calls with no
error and every session's weights equal to its own local replay (ideal device); and on constant-step,
a remote run's mean test accuracy over 3 seeds against 3 local seeds. Real gRPC on
127.0.0.1; both are slow (tens of seconds on 2 cores)."""

from __future__ import annotations

import math
import statistics
import threading

import pytest
import torch

from chiploop.devices import load_device
from chiploop.emulator import IdealCrossbar
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.remote.client import RemoteChip
from chiploop.remote.server import ChipServer

TOKEN = "load-test-token"


def client_session(address: str, seed: int, calls: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``calls`` verb calls on one crossbar of a fresh session (forward, backward, update,
    post_update_step in a seeded mix), and the same calls on a local ideal crossbar. Returns the
    remote weights, the local ones and the number of outputs that differed."""
    g = torch.Generator().manual_seed(seed)
    chip = RemoteChip.connect(address, TOKEN, client=f"load-{seed}")
    W = torch.randn(16, 24, generator=g) * 0.1
    remote, local = chip.factory("layer0", 16, 24), IdealCrossbar(W.clone())
    remote.program(W)
    mismatches, made = 0, 2  # create and program are calls too
    while made < calls:
        verb = int(torch.randint(4, (1,), generator=g))
        if verb == 0:
            x = torch.randn(8, 24, generator=g)
            mismatches += not torch.equal(remote.forward(x), local.forward(x))
        elif verb == 1:
            d = torch.randn(8, 16, generator=g)
            mismatches += not torch.equal(remote.backward(d), local.backward(d))
        elif verb == 2:
            x, d = torch.randn(8, 24, generator=g), torch.randn(8, 16, generator=g)
            remote.update(x, d, 0.01)
            local.update(x, d, 0.01)
        else:
            remote.post_update_step()
        made += 1
    weights = remote.weights()
    chip.close()
    return weights, local.weights(), mismatches


@pytest.mark.slow
def test_four_concurrent_clients_two_thousand_calls_each_equal_their_local_replays():
    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0)
    results, errors = {}, []

    def worker(seed):
        try:
            results[seed] = client_session(f"127.0.0.1:{srv.port}", seed, 2000)
        except Exception as err:  # noqa: BLE001 - every error is reported by the assertion below
            errors.append(repr(err))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    finally:
        srv.stop()
    assert not errors and sorted(results) == [0, 1, 2, 3]
    for seed, (remote, local, mismatches) in results.items():
        assert mismatches == 0 and torch.equal(remote, local), seed
    assert sum(srv.service.refused.values()) == 0 and sum(srv.service.retried.values()) == 0
    assert srv.service.applied["open"] == 4 and not srv.service.sessions


@pytest.mark.slow
def test_a_remote_run_on_constant_step_matches_local_runs_in_distribution(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    srv = ChipServer.start(load_device("constant-step"), TOKEN, port=0)
    base = {"name": "cs", "device": "constant-step", "epochs": 3, "lr": 0.1, "model": {"sizes": [64, 16, 10]}}
    try:
        local = [train(experiment_from_data({**base, "seed": s}), progress=False).final["test_acc"] for s in range(3)]
        remote = [train(experiment_from_data({**base, "seed": s, "chip": {"remote": f"127.0.0.1:{srv.port}",
                                                                            "token_file": str(token)}}),
                        progress=False).final["test_acc"] for s in range(3)]
    finally:
        srv.stop()
    # aihwkit's pulse and read noise is clock-seeded, so both sides are samples. The check, the
    # remote mean inside the range of the 3 local seeds, fails by chance too often to assert (it held in
    # one of two bench_remote.py runs); asserted here: no difference beyond 4.6 standard errors of the
    # difference of means (t with 4 degrees of freedom, two-sided 1 %).
    se = math.sqrt(statistics.variance(local) / 3 + statistics.variance(remote) / 3)
    assert abs(statistics.mean(remote) - statistics.mean(local)) <= 4.6 * se, (local, remote)
