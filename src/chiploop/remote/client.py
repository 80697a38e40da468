"""``RemoteCrossbar``: the :class:`~chiploop.emulator.Crossbar` verbs as calls to a chip server.

A :class:`RemoteChip` is one session on a server; its :meth:`RemoteChip.factory` makes crossbars
there, so ``Chip(factory=remote.factory)`` puts a whole network on the remote chip with no change
to rules or networks. Each call on a crossbar carries ``(session, crossbar, seq)``; a call that times
out or finds the server unavailable is sent again with the *same* ``seq`` (the server applies it
once and answers a retry from its cache), up to ``retries`` times with exponential back-off; then
:class:`~chiploop.emulator.crossbar.ChipLost` is raised, naming the verb and the crossbar. Every
call is entered in the :class:`~chiploop.emulator.ledger.ChipLedger` with its wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from chiploop.lazy import torch

from chiploop.emulator.crossbar import ChipLost, ChipRefused
from chiploop.emulator.ledger import ChipLedger
from chiploop.remote import chiploop_chip_pb2 as pb
from chiploop.remote import chiploop_chip_pb2_grpc as pb_grpc
from chiploop.remote.spec import ChipSpec
from chiploop.remote.wire import MAX_TENSOR_BYTES, TOKEN_KEY, from_wire, to_wire
from chiploop.specs import SpecError, to_plain

# a call that may not have reached the chip, or whose answer was lost: sent again with the same seq
RETRYABLE = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class RemoteError(ChipRefused):
    """The chip refused a call (a bad request, a refused sequence number, a lost session)."""

    def __init__(self, verb: str, crossbar: str, code: grpc.StatusCode, details: str):
        super().__init__(verb, crossbar, f"the chip refused it ({code.name}: {details})")
        self.code, self.details = code, details


def read_token(path: str, field: str = "chip.token_file") -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise SpecError(field, path, f"a readable file holding the chip's token ({err.strerror})") from None
    if not token:
        raise SpecError(field, path, "a file holding the chip's token (this one is empty)")
    return token


@dataclass(eq=False)
class RemoteChip:
    """One session on a chip server: the channel, the token, the session's own sequence numbers."""

    address: str
    channel: grpc.Channel
    stub: pb_grpc.ChipStub
    token: str
    session: str
    ledger: ChipLedger
    timeout: float = 30.0
    retries: int = 3
    session_timeout: float = 60.0
    max_tensor_bytes: int = MAX_TENSOR_BYTES
    seq: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def connect(cls, address: str, token: str, device=None, ledger: ChipLedger | None = None,
                timeout: float = 30.0, retries: int = 3, tls_ca: bytes | None = None,
                client: str = "chiploop") -> RemoteChip:
        """Open a session on the chip at ``address`` (``HOST:PORT``) serving ``device`` (a DeviceSpec,
        checked by the server); a heartbeat thread keeps it alive until :meth:`close`."""
        options = [("grpc.max_receive_message_length", 2 * MAX_TENSOR_BYTES + 2**20),
                   ("grpc.max_send_message_length", 2 * MAX_TENSOR_BYTES + 2**20)]
        channel = (grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca), options=options)
                   if tls_ca is not None else grpc.insecure_channel(address, options=options))
        stub = pb_grpc.ChipStub(channel)
        import json

        request = pb.OpenRequest(device_json=json.dumps(to_plain(device), sort_keys=True) if device else "",
                                 client=client)
        try:
            reply = stub.Open(request, timeout=timeout, metadata=((TOKEN_KEY, token),))
        except grpc.RpcError as err:
            channel.close()
            raise RemoteError("open", "-", err.code(), err.details()) from None
        chip = cls(address, channel, stub, token, reply.session, ledger or ChipLedger(device, remote=True),
                   timeout, retries, reply.session_timeout_s, reply.max_tensor_bytes or MAX_TENSOR_BYTES)
        threading.Thread(target=chip._heartbeat, name="chiploop-heartbeat", daemon=True).start()
        return chip

    @classmethod
    def from_spec(cls, spec: ChipSpec, device, ledger: ChipLedger | None = None) -> RemoteChip:
        """Connect as ``spec`` says; refusals a user can fix are SpecErrors naming the field."""
        token = read_token(spec.token_file)
        ca = None
        if spec.tls_ca:
            try:
                ca = Path(spec.tls_ca).read_bytes()
            except OSError as err:
                raise SpecError("chip.tls_ca", spec.tls_ca, f"a readable PEM file ({err.strerror})") from None
        try:
            return cls.connect(spec.remote, token, device, ledger, spec.timeout_s, spec.retries, ca)
        except RemoteError as err:
            if err.code == grpc.StatusCode.UNAUTHENTICATED:
                raise SpecError("chip.token_file", spec.token_file, "the token the chip was served with (the "
                                "chip refused this one)") from None
            if err.code == grpc.StatusCode.FAILED_PRECONDITION:
                raise SpecError("device", (device.preset or "custom") if device else None,
                                f"the device the chip serves ({err.details})") from None
            raise SpecError("chip.remote", spec.remote, f"the address of a running chip server (chiploop serve); "
                            f"{err.code.name}: {err.details}") from None

    def _metadata(self):
        return ((TOKEN_KEY, self.token),)

    def _heartbeat(self) -> None:
        while not self.stop.wait(max(self.session_timeout / 3, 0.05)):
            try:
                self.stub.Heartbeat(pb.HeartbeatRequest(session=self.session), timeout=self.timeout,
                                    metadata=self._metadata())
            except grpc.RpcError:
                pass  # the next verb finds out, retries, and reports

    def call(self, verb: str, crossbar: str, rpc: str, request) -> tuple[Any, float]:
        """``rpc`` with ``request``, sent again unchanged after a timeout or an unavailable chip.
        Returns the reply and the wall time of the whole call (retries included)."""
        method = getattr(self.stub, rpc)
        start = time.perf_counter()
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata()), time.perf_counter() - start
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE:
                    raise RemoteError(verb, crossbar, err.code(), err.details()) from None
                last = err
                if attempt < self.retries:
                    time.sleep(min(0.05 * 2 ** attempt, 1.0))
        raise ChipLost(verb, crossbar, f"{last.code().name} after {self.retries + 1} attempts") from None

    def session_call(self, verb: str, rpc: str, make: Callable[[pb.SessionCall], Any]):
        request = make(pb.SessionCall(session=self.session, seq=self.seq + 1))
        reply, seconds = self.call(verb, "-", rpc, request)
        self.seq += 1
        self.ledger.record(verb, seconds=seconds)
        return reply

    def factory(self, name: str, out_size: int, in_size: int) -> RemoteCrossbar:
        """A new crossbar ``name`` of (out, in) on the chip (device draws derive from ``name``)."""
        reply = self.session_call("create", "Create", lambda call: pb.CreateRequest(
            call=call, name=name, out_size=out_size, in_size=in_size))
        return RemoteCrossbar(self, reply.crossbar, name, (out_size, in_size))

    def close(self) -> None:
        """Free the session on the chip (best effort: a lost chip frees it by its timeout)."""
        self.stop.set()
        try:
            self.stub.Close(pb.SessionCall(session=self.session, seq=self.seq + 1), timeout=min(self.timeout, 5.0),
                            metadata=self._metadata())
            self.seq += 1
        except grpc.RpcError:
            pass
        self.channel.close()


@dataclass(eq=False)
class RemoteCrossbar:
    """A crossbar on a remote chip, reached through the verbs (``proto/chiploop_chip.proto``)."""

    chip: RemoteChip
    id: int
    name: str
    shape: tuple[int, int]   # (out, in)
    seq: int = 0             # last sequence number the chip applied

    def _call(self, verb: str, rpc: str, make: Callable[[pb.Target], Any]):
        request = make(pb.Target(session=self.chip.session, crossbar=self.id, seq=self.seq + 1))
        reply, seconds = self.chip.call(verb, self.name, rpc, request)
        self.seq += 1
        return reply, seconds

    def _read(self, verb: str, rpc: str, t: torch.Tensor, driven: int, converted: int) -> torch.Tensor:
        reply, seconds = self._call(verb, rpc, lambda target: pb.ReadRequest(target=target, input=to_wire(t)))
        self.chip.ledger.read(verb, t.shape[0], driven, converted, seconds)
        return from_wire(reply.output, "output", (t.shape[0], converted), self.chip.max_tensor_bytes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._read("forward", "Forward", x, self.shape[1], self.shape[0])

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        return self._read("backward", "Backward", d, self.shape[0], self.shape[1])

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        if not (torch.isfinite(x).all() and torch.isfinite(d).all()):  # the chip would refuse it
            raise ChipRefused("update", self.name, "non-finite x or d (the run diverged)", diverged=True)
        _, seconds = self._call("update", "Update", lambda target: pb.UpdateRequest(
            target=target, x=to_wire(x), d=to_wire(d), lr=float(lr)))
        self.chip.ledger.update(x, d, lr, seconds)

    def _matrix(self, verb: str, rpc: str) -> torch.Tensor:
        reply, seconds = self._call(verb, rpc, lambda target: pb.TargetRequest(target=target))
        self.chip.ledger.record(verb, 0, 4 * self.shape[0] * self.shape[1], seconds)
        return from_wire(reply.weights, "weights", self.shape, self.chip.max_tensor_bytes)

    def weights(self) -> torch.Tensor:
        return self._matrix("weights", "Weights")

    def read_weights(self) -> torch.Tensor:
        return self._matrix("read_weights", "ReadWeights")

    def program(self, W: torch.Tensor) -> None:
        _, seconds = self._call("program", "Program", lambda target: pb.ProgramRequest(target=target,
                                                                                      weights=to_wire(W)))
        self.chip.ledger.record("program", 4 * self.shape[0] * self.shape[1], 0, seconds)

    def _plain(self, verb: str, rpc: str, make=None) -> Any:
        reply, seconds = self._call(verb, rpc, make or (lambda target: pb.TargetRequest(target=target)))
        self.chip.ledger.record(verb, seconds=seconds)
        return reply

    def clone(self) -> RemoteCrossbar:
        reply = self._plain("clone", "Clone")
        return RemoteCrossbar(self.chip, reply.crossbar, self.name, self.shape)

    def restore(self, source: RemoteCrossbar) -> None:
        if not isinstance(source, RemoteCrossbar) or source.chip is not self.chip:
            raise TypeError(f"restore of remote crossbar {self.name}: the source must be a crossbar of the same "
                            "remote session")
        self._plain("restore", "Restore", lambda target: pb.RestoreRequest(target=target, source=source.id))

    def post_update_step(self) -> None:
        self._plain("post_update_step", "PostUpdateStep")

    def drift(self, seconds: float) -> None:
        self._plain("drift", "Drift", lambda target: pb.DriftRequest(target=target, seconds=float(seconds)))
