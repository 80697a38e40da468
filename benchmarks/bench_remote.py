"""A chip over gRPC on loopback: what the wire costs, and what each rule sends across it.

1. Step time, remote ÷ local: backprop on digits 64-64-10 (batch 32, ideal device), one epoch of
   training steps per repeat, the chip served by a `chiploop serve` process on 127.0.0.1.
2. Load: 4 concurrent clients x 2,000 verb calls (forward, backward, update, post_update_step) on
   the same server: calls per second, errors.
3. The chip ledger per training step, per rule (backprop, FA, DFA, NP, SPSA with and without
   shared seed) on two pulsed devices: verb calls, bytes across the bus, expected programming pulses,
   energy (one epoch each; the ledger is the same for a local and a remote chip, tests/test_remote.py).
   SPSA's ``bus_bytes_per_step`` is the rule's own model of a chip that regenerates the directions
   from the shared seed; protocol v1 sends every update as tensors, so the verb bytes are the same
   with and without it.
4. Acceptance 1 on constant-step: test accuracy of 3 seeds, local and remote (3 epochs).

Reported, not asserted. Run: ``.venv/bin/python benchmarks/bench_remote.py [--repeats 5] [--skip-rules]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run, train
from timing import interleaved_medians  # benchmarks/timing.py

TOKEN = "bench-remote-token"
RULES = [("backprop", {}), ("feedback_alignment", {}), ("direct_feedback_alignment", {}),
         ("node_perturbation", {}), ("spsa", {"shared_seed": True}), ("spsa", {"shared_seed": False})]


def serve(device: str, token_file: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "chiploop.experiments.cli", "serve", "--device", device,
                             "--port", "0", "--token-file", str(token_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    return proc, int(line.split("127.0.0.1:")[1].split()[0].rstrip(";"))


def step_ratio(port: int, token_file: Path, repeats: int) -> None:
    base = {"device": "ideal", "epochs": 1, "model": {"sizes": [64, 64, 10]}}
    local = Run.build(experiment_from_data(base))
    remote = Run.build(experiment_from_data({**base, "chip": {"remote": f"127.0.0.1:{port}",
                                                              "token_file": str(token_file)}}))
    t_local, t_remote = interleaved_medians([lambda: local.epoch(1), lambda: remote.epoch(1)], repeats)
    steps = local.steps // (repeats + 1)
    calls = remote.ledger.summary(remote.steps)["per_step"]["calls"]
    print(f"1. backprop 64-64-10, batch 32, ideal device, {steps} steps per epoch, median of {repeats} epochs:")
    print(f"   local {1e3 * t_local / steps:.3f} ms/step, remote {1e3 * t_remote / steps:.3f} ms/step, "
          f"ratio {t_remote / t_local:.1f} ({calls:.0f} verb calls per step)")
    remote.close()


def load(port: int, clients: int = 4, calls: int = 2000) -> None:
    from chiploop.remote.client import RemoteChip

    errors: list[str] = []

    def client(seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        try:
            chip = RemoteChip.connect(f"127.0.0.1:{port}", TOKEN)
            xb = chip.factory("layer0", 16, 24)
            for k in range(calls):
                verb = k % 4
                if verb == 0:
                    xb.forward(torch.randn(8, 24, generator=g))
                elif verb == 1:
                    xb.backward(torch.randn(8, 16, generator=g))
                elif verb == 2:
                    xb.update(torch.randn(8, 24, generator=g), torch.randn(8, 16, generator=g), 0.01)
                else:
                    xb.post_update_step()
            chip.close()
        except Exception as err:  # noqa: BLE001 - counted and printed
            errors.append(repr(err))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    print(f"2. load: {clients} concurrent clients x {calls} verb calls in {seconds:.1f} s: "
          f"{clients * calls / seconds:.0f} calls/s, {len(errors)} errors")


def rule_table() -> None:
    print("3. chip ledger per training step (digits 64-64-10, batch 32, lr 0.1, 1 epoch, seed 0):")
    print("| device | rule | calls | bytes | pulses | energy (µJ) | rule's bus model (bytes) |")
    print("|---|---|---|---|---|---|---|")
    for device in ("constant-step", "reram-sb"):
        for name, options in RULES:
            spec = experiment_from_data({"device": device, "epochs": 1, "lr": 0.1,
                                         "model": {"sizes": [64, 64, 10]}, "rule": {"name": name, **options}})
            result = train(spec, progress=False)
            p = result.ledger["per_step"]
            label = name + (f" (shared_seed {str(options['shared_seed']).lower()})" if "shared_seed" in options else "")
            model = result.final.get("bus_bytes_per_step")
            print(f"| {device} | {label} | {p['calls']:.1f} | {p['bytes']:,.0f} | {p['pulses']:,.0f} | "
                  f"{1e6 * p['energy_j']:.3f} | {'-' if model is None else f'{model:,.0f}'} |")


def accuracy(token_file: Path, seeds: int, epochs: int) -> None:
    """Acceptance 1 on an analog device: aihwkit's noise is clock-seeded, so remote and local runs are
    compared as samples: the remote seeds' mean against the local seeds' range (min..max)."""
    proc, port = serve("constant-step", token_file)
    try:
        base = {"device": "constant-step", "epochs": epochs, "lr": 0.1, "model": {"sizes": [64, 64, 10]}}
        local = [train(experiment_from_data({**base, "seed": s}), progress=False).final["test_acc"]
                 for s in range(seeds)]
        remote = [train(experiment_from_data({**base, "seed": s, "chip": {"remote": f"127.0.0.1:{port}",
                                                                            "token_file": str(token_file)}}),
                        progress=False).final["test_acc"] for s in range(seeds)]
    finally:
        proc.terminate()
        proc.wait()
    print(f"4. constant-step, 64-64-10, {epochs} epochs, test accuracy of seeds 0-{seeds - 1}: local "
          f"{', '.join(f'{a:.4f}' for a in local)} (mean {statistics.mean(local):.4f}); remote "
          f"{', '.join(f'{a:.4f}' for a in remote)} (mean {statistics.mean(remote):.4f}); remote mean within the "
          f"local spread [{min(local):.4f}, {max(local):.4f}]: "
          f"{'yes' if min(local) <= statistics.mean(remote) <= max(local) else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-rules", action="store_true", help="skip the per-rule ledger table")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per side of the constant-step comparison")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each constant-step run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        proc, port = serve("ideal", token_file)
        try:
            step_ratio(port, token_file, args.repeats)
            load(port)
        finally:
            proc.terminate()
            proc.wait()
        if not args.skip_rules:
            rule_table()
        accuracy(token_file, args.seeds, args.epochs)


if __name__ == "__main__":
    main()
