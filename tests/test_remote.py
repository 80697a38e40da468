"""The chip over gRPC (proto/chiploop_chip.proto): a remote run equals a local one, updates are applied
exactly once, and every fault ends in one clear message with the other side unharmed. Real servers on
127.0.0.1 (ephemeral ports), in this process or as `chiploop serve`; real clients; nothing mocked."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from processes import reap

from chiploop.devices import load_device
from chiploop.emulator import IdealCrossbar
from chiploop.emulator.crossbar import ChipLost
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import RunChipLost, train
from chiploop.remote import chiploop_chip_pb2 as pb
from chiploop.remote import chiploop_chip_pb2_grpc as pb_grpc
from chiploop.remote.client import RemoteChip, RemoteError
from chiploop.remote.server import ChipServer
from chiploop.remote.wire import TOKEN_KEY, to_wire
from chiploop.specs import SpecError

CLI = [sys.executable, "-m", "chiploop.experiments.cli"]
TOKEN = "a-token-of-this-test"
DEADLINE = 120  # seconds: a bound on a hung process or a wait, never a speed check
BASE = {"name": "remote", "device": "ideal", "epochs": 2, "model": {"sizes": [64, 16, 10]}}


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def server():
    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0)
    yield srv
    srv.stop()


def remote_spec(port: int, token_file: Path, **extra):
    return experiment_from_data({**BASE, "chip": {"remote": f"127.0.0.1:{port}", "token_file": str(token_file),
                                                  **extra.pop("chip", {})}, **extra})


def stub_for(port: int):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, pb_grpc.ChipStub(channel)


AUTH = ((TOKEN_KEY, TOKEN),)


# ------------------------------------------------------------------------------ 1. remote = local

def test_a_remote_run_on_the_ideal_device_equals_the_local_run(server, token_file):
    local = train(experiment_from_data(BASE), progress=False)
    remote = train(remote_spec(server.port, token_file), progress=False)
    assert remote.status == local.status == "ok"
    for a, b in zip(local.history, remote.history, strict=True):
        for key in ("train_loss", "val_loss", "test_loss", "train_acc", "test_acc"):
            assert abs(a[key] - b[key]) <= 1e-6, key
    # the ledger counts the same calls and bytes for the local chip and the remote one
    for phase in ("train", "evaluate"):
        for verb, row in local.ledger["phases"][phase].items():
            got = remote.ledger["phases"][phase][verb]
            assert (got["calls"], got["bytes_to_chip"], got["bytes_from_chip"]) == \
                (row["calls"], row["bytes_to_chip"], row["bytes_from_chip"]), verb
            assert "wall_median_s" in got and "wall_median_s" not in row
    assert remote.ledger["remote"] and not local.ledger["remote"]
    assert not server.service.sessions, "the run closed its session"


def test_the_ledger_counts_what_crosses_the_bus_exactly(token_file):
    """A 64-16-10 MLP, batch 32, backprop: per step 2 forward reads, 1 transposed read, 2 updates."""
    spec = experiment_from_data({**BASE, "epochs": 1, "task": {"name": "digits", "val_fraction": 0.0}})
    result = train(spec, progress=False)
    steps = result.ledger["steps"]
    train_phase = result.ledger["phases"]["train"]
    rows = 1437  # digits: 1797 samples, 20% test, no validation
    assert steps == -(-rows // 32)
    assert train_phase["forward"]["calls"] == 2 * steps
    assert train_phase["forward"]["bytes_to_chip"] == 4 * rows * (64 + 16)
    assert train_phase["forward"]["bytes_from_chip"] == 4 * rows * (16 + 10)
    assert train_phase["backward"] == {**train_phase["backward"], "calls": steps, "bytes_to_chip": 4 * rows * 10,
                                       "bytes_from_chip": 4 * rows * 16}
    assert train_phase["update"]["bytes_to_chip"] == 4 * rows * (64 + 16 + 16 + 10)
    e = spec.device.energy
    read = rows * (e.read_cell_j * (64 * 16 + 16 * 10) + e.dac_j * (64 + 16) + e.adc_j * (16 + 10))
    assert train_phase["forward"]["energy_j"] == pytest.approx(read, rel=1e-9)
    assert train_phase["update"]["pulses"] == 0.0  # a float device is not pulsed


# ------------------------------------------------------------------------------ 2. exactly once

class DelayFirstUpdate(grpc.ServerInterceptor):
    """Lets the server apply the first Update, then holds its reply past the client's deadline."""

    def __init__(self, hold: float):
        self.hold, self.done = hold, threading.Event()

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if not details.method.endswith("/Update"):
            return handler

        def behaviour(request, context):
            reply = handler.unary_unary(request, context)
            if not self.done.is_set():
                self.done.set()
                time.sleep(self.hold)  # applied; the client gives up waiting and retries
            return reply

        return grpc.unary_unary_rpc_method_handler(behaviour, handler.request_deserializer,
                                                   handler.response_serializer)


def test_an_update_retried_after_a_timeout_is_applied_once():
    delay = DelayFirstUpdate(hold=1.5)
    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0, interceptors=[delay])
    try:
        chip = RemoteChip.connect(f"127.0.0.1:{srv.port}", TOKEN, timeout=0.5, retries=3)
        g = torch.Generator().manual_seed(0)
        W = torch.randn(5, 7, generator=g)
        xb = chip.factory("layer0", 5, 7)
        xb.program(W)
        local = IdealCrossbar(W.clone())
        for _ in range(4):
            x, d = torch.randn(3, 7, generator=g), torch.randn(3, 5, generator=g)
            xb.update(x, d, 0.1)
            local.update(x, d, 0.1)
        assert delay.done.is_set(), "the first update's reply was held past the deadline"
        assert srv.service.retried["update"] >= 1, "the client retried"
        assert srv.service.applied["update"] == 4
        assert torch.equal(xb.weights(), local.weights())  # a run without the retry
        chip.close()
    finally:
        srv.stop()


def test_a_replayed_a_skipped_or_a_changed_sequence_number_is_refused(server):
    channel, stub = stub_for(server.port)
    with channel:
        session = stub.Open(pb.OpenRequest(), metadata=AUTH).session
        xb = stub.Create(pb.CreateRequest(call=pb.SessionCall(session=session, seq=1), name="w", out_size=2,
                                          in_size=3), metadata=AUTH).crossbar
        crossbar = server.service.sessions[session].crossbars[xb].crossbar
        x, d = to_wire(torch.ones(1, 3)), to_wire(torch.ones(1, 2))

        def update(seq, lr=0.5):
            return stub.Update(pb.UpdateRequest(target=pb.Target(session=session, crossbar=xb, seq=seq), x=x, d=d,
                                                lr=lr), metadata=AUTH)

        update(1)
        update(2)
        after_two = crossbar.weights()
        assert torch.equal(after_two, torch.full((2, 3), -1.0))
        update(2)  # a retry of the last call: answered, not applied
        assert torch.equal(crossbar.weights(), after_two)
        for seq, lr, text in ((1, 0.5, "replay"), (4, 0.5, "gap"), (2, 0.25, "different request")):
            with pytest.raises(grpc.RpcError) as err:
                update(seq, lr)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and text in err.value.details()
        assert torch.equal(crossbar.weights(), after_two)
        update(3)  # the chip goes on with the next number
        assert torch.equal(crossbar.weights(), torch.full((2, 3), -1.5))


# ------------------------------------------------------------------------------ 3. faults

def test_a_missing_or_wrong_token_is_refused_and_creates_nothing(server, tmp_path):
    channel, stub = stub_for(server.port)
    with channel:
        for metadata in ((), ((TOKEN_KEY, "wrong"),), ((TOKEN_KEY, TOKEN + "x"),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Open(pb.OpenRequest(), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "token" in err.value.details()
        session = stub.Open(pb.OpenRequest(), metadata=AUTH).session
        with pytest.raises(grpc.RpcError) as err:  # a valid session does not stand in for the token
            stub.Create(pb.CreateRequest(call=pb.SessionCall(session=session, seq=1), name="w", out_size=2,
                                         in_size=2), metadata=((TOKEN_KEY, "wrong"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert list(server.service.sessions) == [session] and not server.service.sessions[session].crossbars
    wrong = tmp_path / "wrong"
    wrong.write_text("not the token")
    with pytest.raises(SpecError, match="chip.token_file"):
        train(remote_spec(server.port, wrong), progress=False)
    assert list(server.service.sessions) == [session]


def test_one_session_cannot_reach_another_sessions_crossbars(server):
    a = RemoteChip.connect(f"127.0.0.1:{server.port}", TOKEN)
    b = RemoteChip.connect(f"127.0.0.1:{server.port}", TOKEN)
    xa = a.factory("w", 2, 2)
    xa.program(torch.eye(2))
    stranger = type(xa)(b, xa.id, "w", (2, 2))  # b names a's crossbar number in its own session
    with pytest.raises(RemoteError) as err:
        stranger.program(torch.zeros(2, 2))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert torch.equal(xa.weights(), torch.eye(2))
    a.close()
    b.close()


MALFORMED = [
    ("wrong shape", lambda: pb.Tensor(shape=[1, 4], dtype="float32", data=np.zeros(4, "<f4").tobytes()), "input.shape"),
    ("wrong dtype", lambda: pb.Tensor(shape=[1, 3], dtype="float64", data=np.zeros(3, "<f8").tobytes()), "dtype"),
    ("byte count", lambda: pb.Tensor(shape=[1, 3], dtype="float32", data=b"\0" * 11), "12 bytes"),
    ("NaN", lambda: pb.Tensor(shape=[1, 3], dtype="float32", data=np.array([0, np.nan, 0], "<f4").tobytes()), "NaN"),
    ("oversized", lambda: pb.Tensor(shape=[2048, 3], dtype="float32", data=np.zeros(6144, "<f4").tobytes()),
     "at most 4096 bytes"),
]


def test_a_malformed_request_is_invalid_argument_and_the_server_goes_on():
    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0, max_tensor_bytes=4096)
    channel, stub = stub_for(srv.port)
    try:
        session = stub.Open(pb.OpenRequest(), metadata=AUTH).session
        xb = stub.Create(pb.CreateRequest(call=pb.SessionCall(session=session, seq=1), name="w", out_size=2,
                                          in_size=3), metadata=AUTH).crossbar
        for name, make, text in MALFORMED:
            with pytest.raises(grpc.RpcError) as err:
                stub.Forward(pb.ReadRequest(target=pb.Target(session=session, crossbar=xb, seq=1), input=make()),
                             metadata=AUTH)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert text in err.value.details() and err.value.details().startswith("forward: "), name
        with pytest.raises(grpc.RpcError) as err:  # a NaN learning rate
            stub.Update(pb.UpdateRequest(target=pb.Target(session=session, crossbar=xb, seq=1),
                                         x=to_wire(torch.ones(1, 3)), d=to_wire(torch.ones(1, 2)), lr=float("nan")),
                        metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "lr" in err.value.details()
        # the next valid request is served, with the sequence number the refused ones did not use
        reply = stub.Forward(pb.ReadRequest(target=pb.Target(session=session, crossbar=xb, seq=1),
                                            input=to_wire(torch.ones(1, 3))), metadata=AUTH)
        assert list(reply.output.shape) == [1, 2]
        assert srv.service.refused["INVALID_ARGUMENT"] == len(MALFORMED) + 1
    finally:
        channel.close()
        srv.stop()


CLIENT = """
import sys, torch
from chiploop.remote.client import RemoteChip
chip = RemoteChip.connect(sys.argv[1], sys.argv[2])
chip.factory("w", 4, 4).program(torch.eye(4))
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_client_killed_mid_session_has_its_session_freed():
    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0, session_timeout=0.5)
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, f"127.0.0.1:{srv.port}", TOKEN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        (session,) = srv.service.sessions.values()
        assert len(session.crossbars) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while srv.service.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not srv.service.sessions and srv.service.expired == 1 and not session.crossbars
        # and the server serves the next client
        chip = RemoteChip.connect(f"127.0.0.1:{srv.port}", TOKEN)
        chip.factory("w", 2, 2)
        chip.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        srv.stop()
    assert not reap({proc.pid}, grace=5)


def start_serve(tmp_path: Path, token_file: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """`chiploop serve` on a free port; returns the process and the port it printed."""
    proc = subprocess.Popen([*CLI, "serve", "--port", "0", "--token-file", str(token_file), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    line = proc.stdout.readline()
    assert " on 127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
    return proc, int(line.split("127.0.0.1:")[1].split()[0].rstrip(";"))


def test_a_server_killed_mid_run_ends_it_as_chip_lost_with_the_finished_epochs(tmp_path, token_file):
    proc, port = start_serve(tmp_path, token_file)
    try:
        spec = remote_spec(port, token_file, epochs=3, chip={"timeout_s": 2.0, "retries": 2})

        def kill_after_first(row):
            if row["epoch"] == 1:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=DEADLINE)

        with pytest.raises(RunChipLost) as lost:
            train(spec, out_dir=tmp_path / "run", progress=False, on_epoch=kill_after_first)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    message = str(lost.value)
    assert message.startswith("chip lost: forward on crossbar layer0 got no answer (UNAVAILABLE after 3 attempts)")
    local = train(experiment_from_data({**BASE, "epochs": 1}), progress=False)
    assert message.endswith(f"at step {local.ledger['steps'] + 1} (epoch 2)"), message  # the first step after epoch 1
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "chip_lost" and result["error"] == message
    assert [row["epoch"] for row in result["history"]] == [0, 1]
    for a, b in zip(local.history, result["history"], strict=True):
        assert abs(a["test_loss"] - b["test_loss"]) <= 1e-6
    assert not (tmp_path / "run" / "weights.npz").exists()


def test_chiploop_run_exits_2_with_one_line_when_the_chip_stops(tmp_path, token_file, capsys):
    """In this process: the server stops once the run's session is open (the CLI opens one to check the
    chip first), wherever the run then is: setting up, evaluating or training."""
    from chiploop.experiments.cli import main

    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: lost\ndevice: ideal\nepochs: 50\nmodel: {{sizes: [64, 16, 10]}}\n"
                    f"chip: {{remote: '127.0.0.1:{srv.port}', token_file: {token_file}, timeout_s: 2, retries: 1}}\n")

    def stop_when_open():
        deadline = time.monotonic() + DEADLINE
        while srv.service.applied["open"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.stop()

    watcher = threading.Thread(target=stop_when_open)
    watcher.start()
    try:
        code = main(["run", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    finally:
        watcher.join()
        srv.stop()
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("chiploop: error: chip lost: "), err
    if (tmp_path / "run" / "result.json").exists():
        assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "chip_lost"


@pytest.mark.slow
def test_the_cli_exits_2_with_one_line_when_the_chip_is_lost(tmp_path, token_file):
    proc, port = start_serve(tmp_path, token_file)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: lost\ndevice: ideal\nepochs: 400\nmodel: {{sizes: [64, 16, 10]}}\n"
                    f"chip: {{remote: '127.0.0.1:{port}', token_file: {token_file}, timeout_s: 2, retries: 1}}\n")
    run = subprocess.Popen([*CLI, "run", str(spec), "--out", str(tmp_path / "run")], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, cwd=tmp_path)
    err = b""
    try:
        deadline = time.monotonic() + DEADLINE
        while b"| 2/400" not in err and run.poll() is None and time.monotonic() < deadline:
            err += run.stderr.read1(4096)  # the progress bar: two epochs done
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        out, rest = run.communicate(timeout=DEADLINE)
    finally:
        for p in (run, proc):
            if p.poll() is None:
                p.kill()
            p.wait()
        proc.stdout.close()
        proc.stderr.close()
    text = (err + rest).decode()
    assert run.returncode == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("chiploop")]
    assert len(lines) == 1 and lines[0].startswith("chiploop: error: chip lost: "), text
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    kept = len(result["history"]) - 1
    assert result["status"] == "chip_lost" and kept >= 2
    assert lines[0].endswith(f"(status chip_lost, {kept} finished epochs kept)")


def test_a_chip_that_never_answers_is_named_before_training(tmp_path, token_file):
    from processes import free_port

    with pytest.raises(SpecError, match="chip.remote"):
        train(remote_spec(free_port(), token_file, chip={"timeout_s": 1.0}), progress=False)


def test_a_remote_run_refuses_a_device_the_chip_does_not_serve(server, token_file):
    with pytest.raises(SpecError, match="the device the chip serves"):
        train(remote_spec(server.port, token_file, device="constant-step"), progress=False)
    assert not server.service.sessions


def test_chip_lost_names_the_verb_and_crossbar(server):
    chip = RemoteChip.connect(f"127.0.0.1:{server.port}", TOKEN, timeout=1.0, retries=1)
    xb = chip.factory("layer1", 2, 2)
    server.stop()
    with pytest.raises(ChipLost, match="update on crossbar layer1"):
        xb.update(torch.ones(1, 2), torch.ones(1, 2), 0.1)
    chip.close()


def test_a_remote_run_that_diverges_ends_as_diverged_like_a_local_one(server, token_file):
    local = train(experiment_from_data({**BASE, "lr": 1000.0}), progress=False)
    remote = train(remote_spec(server.port, token_file, lr=1000.0), progress=False)
    assert local.status == remote.status == "diverged" and len(local.history) == len(remote.history)


def test_a_non_finite_update_is_divergence_not_a_request_the_chip_refuses(server):
    from chiploop.emulator.crossbar import ChipRefused

    chip = RemoteChip.connect(f"127.0.0.1:{server.port}", TOKEN)
    xb = chip.factory("layer0", 2, 2)
    with pytest.raises(ChipRefused, match="non-finite") as err:
        xb.update(torch.tensor([[float("nan"), 0.0]]), torch.ones(1, 2), 0.1)
    assert err.value.diverged and server.service.refused["INVALID_ARGUMENT"] == 0  # never sent
    xb.update(torch.ones(1, 2), torch.ones(1, 2), 0.1)  # the sequence goes on
    chip.close()


@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="needs the openssl command")
def test_a_tls_chip_serves_a_client_that_trusts_its_certificate_and_no_other(tmp_path, token_file):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    tls = ((tmp_path / "cert.pem").read_bytes(), (tmp_path / "key.pem").read_bytes())
    srv = ChipServer.start(load_device("ideal"), TOKEN, port=0, tls=tls)
    try:
        local = train(experiment_from_data({**BASE, "epochs": 1}), progress=False)
        remote = train(remote_spec(srv.port, token_file, epochs=1, chip={"tls_ca": str(tmp_path / "cert.pem")}),
                       progress=False)
        assert abs(local.final["test_loss"] - remote.final["test_loss"]) <= 1e-6
        with pytest.raises(SpecError, match="chip.remote"):  # a plain connection to a TLS chip
            train(remote_spec(srv.port, token_file, epochs=1, chip={"timeout_s": 2.0}), progress=False)
    finally:
        srv.stop()
