"""``ChipService``: an emulated chip behind the gRPC protocol of ``proto/chiploop_chip.proto``.

The server holds sessions; each session holds crossbars made by the emulator's own factory
(:func:`chiploop.emulator.chip_factory` for the served device), so a crossbar named ``layer0`` on
the server has the same device draws as ``layer0`` on a local chip. Every call:

1. carries the token in the metadata key ``x-chiploop-token``, compared with
   :func:`hmac.compare_digest` (constant time); missing or wrong: ``UNAUTHENTICATED``, nothing done;
2. names a session (an unguessable id from :meth:`Open`): another client's crossbars are unreachable;
3. is applied exactly once: a call on a crossbar carries ``seq = last + 1``; ``seq == last`` with the
   same request bytes is a retry and gets the cached reply without touching the crossbar; a replay
   (``seq < last``), a gap (``seq > last + 1``) or a different request under the last number is
   ``FAILED_PRECONDITION``;
4. is validated before it touches a crossbar (:mod:`chiploop.remote.wire`): ``INVALID_ARGUMENT``.

A reaper thread frees sessions not heard from for ``session_timeout`` seconds (clients send
``Heartbeat``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator import Crossbar, chip_factory
from chiploop.remote import chiploop_chip_pb2 as pb
from chiploop.remote import chiploop_chip_pb2_grpc as pb_grpc
from chiploop.remote.wire import MAX_TENSOR_BYTES, TOKEN_KEY, WireError, from_wire, to_wire
from chiploop.specs import to_plain

MAX_CROSSBARS = 4096       # per session
MAX_CELLS = 2**24          # per crossbar (out * in): 16 Mi cells


class Refused(Exception):
    """A call the chip refuses with ``code`` and one line ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class Entry:
    """One crossbar of a session and its exactly-once bookkeeping."""

    name: str
    crossbar: Crossbar
    seq: int = 0                  # last applied sequence number
    digest: bytes = b""           # of the request applied under ``seq``
    reply: Any = None             # its reply, sent again to a retry


@dataclass(eq=False)
class Session:
    id: str
    client: str
    crossbars: dict[int, Entry] = field(default_factory=dict)
    next_id: int = 1
    seq: int = 0                  # session-level calls (Create, Close)
    digest: bytes = b""
    reply: Any = None
    last_seen: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


def digest(request) -> bytes:
    return hashlib.blake2b(request.SerializeToString(deterministic=True), digest_size=16).digest()


def check_seq(last: int, last_digest: bytes, seq: int, request, what: str) -> bool:
    """True for a retry of the last applied call (send its cached reply); False for the next call;
    refuses everything else."""
    if seq == last and seq > 0:
        if digest(request) != last_digest:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: seq {seq} was already applied to a "
                          "different request (a retry must resend the same request)")
        return True
    if seq != last + 1:
        kind = "a replay of an applied number" if seq < last else "a gap"
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: seq {seq} refused ({kind}); the next "
                      f"call must carry seq {last + 1}")
    return False


class ChipService(pb_grpc.ChipServicer):
    """The emulated chip: sessions of crossbars of ``device``, verbs applied exactly once."""

    def __init__(self, device: DeviceSpec, token: str, session_timeout: float = 60.0,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES, log: Callable[[str], None] | None = None):
        if not token:
            raise ValueError("the token must not be empty")
        self.device, self.token = device, token.encode()
        self.device_json = json.dumps(to_plain(device), sort_keys=True)
        self.factory = chip_factory(device, device.is_float)
        self.session_timeout, self.max_tensor_bytes = session_timeout, max_tensor_bytes
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.applied: Counter[str] = Counter()   # verb -> calls applied
        self.retried: Counter[str] = Counter()   # verb -> retries answered from the cache
        self.refused: Counter[str] = Counter()   # status code name -> calls refused
        self.expired = 0
        self.log = log or (lambda line: None)

    # ------------------------------------------------------------------ guards
    def _guard(self, context, verb: str, body: Callable[[], Any]):
        """Token check, then ``body``; a :class:`Refused` or :class:`WireError` aborts the call."""
        try:
            sent = dict(context.invocation_metadata()).get(TOKEN_KEY, "")
            if not hmac.compare_digest(sent.encode() if isinstance(sent, str) else sent, self.token):
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (metadata "
                              f"{TOKEN_KEY})")
            return body()
        except WireError as err:
            self.refused["INVALID_ARGUMENT"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{verb}: {err}")
        except Refused as err:
            self.refused[err.code.name] += 1
            context.abort(err.code, str(err))

    def _session(self, session_id: str) -> Session:
        with self.lock:
            session = self.sessions.get(session_id)
        if session is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"no session {session_id[:8]}… (closed, or freed after "
                          f"{self.session_timeout:g} s without a call)")
        session.last_seen = time.monotonic()
        return session

    def _on_crossbar(self, target: pb.Target, request, verb: str, apply: Callable[[Session, Entry], Any]):
        """Exactly-once application of ``apply`` to the target crossbar."""
        session = self._session(target.session)
        with session.lock:
            entry = session.crossbars.get(target.crossbar)
            if entry is None:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"{verb}: no crossbar {target.crossbar} in this session")
            if check_seq(entry.seq, entry.digest, target.seq, request, f"{verb} on {entry.name}"):
                self.retried[verb] += 1
                return entry.reply
            reply = apply(session, entry)
            entry.seq, entry.digest, entry.reply = target.seq, digest(request), reply
            self.applied[verb] += 1
            return reply

    def _on_session(self, call: pb.SessionCall, request, verb: str, apply: Callable[[Session], Any]):
        session = self._session(call.session)
        with session.lock:
            if check_seq(session.seq, session.digest, call.seq, request, verb):
                self.retried[verb] += 1
                return session.reply
            reply = apply(session)
            session.seq, session.digest, session.reply = call.seq, digest(request), reply
            self.applied[verb] += 1
            return reply

    def _tensor(self, msg, name: str, shape) -> torch.Tensor:
        return from_wire(msg, name, shape, self.max_tensor_bytes)

    # ------------------------------------------------------------------ sessions
    def Open(self, request, context):
        def body():
            if request.device_json:
                try:
                    asked = json.loads(request.device_json)
                except ValueError:
                    raise WireError("device_json", "text that is not JSON", "the device spec as JSON") from None
                if asked != json.loads(self.device_json):
                    served = json.loads(self.device_json)
                    differ = sorted(k for k in set(asked) | set(served) if asked.get(k) != served.get(k))
                    raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "this chip serves device "
                                  f"{served.get('preset') or 'custom'}; the run asks for "
                                  f"{asked.get('preset') or 'custom'} (fields differ: {', '.join(differ[:6])})")
            session = Session(secrets.token_hex(16), request.client[:200])
            with self.lock:
                self.sessions[session.id] = session
            self.applied["open"] += 1
            self.log(f"session {session.id[:8]} opened by {session.client or 'a client'}")
            return pb.OpenReply(session=session.id, device_json=self.device_json,
                                session_timeout_s=self.session_timeout, max_tensor_bytes=self.max_tensor_bytes)
        return self._guard(context, "open", body)

    def Close(self, request, context):
        def apply(session):
            with self.lock:
                self.sessions.pop(session.id, None)
            freed = len(session.crossbars)
            session.crossbars.clear()
            self.log(f"session {session.id[:8]} closed ({freed} crossbars freed)")
            return pb.CloseReply(crossbars_freed=freed)
        return self._guard(context, "close", lambda: self._on_session(request, request, "close", apply))

    def Heartbeat(self, request, context):
        def body():
            self._session(request.session)
            return pb.HeartbeatReply(session_timeout_s=self.session_timeout)
        return self._guard(context, "heartbeat", body)

    def Create(self, request, context):
        def apply(session):
            out_size, in_size = request.out_size, request.in_size
            if out_size < 1 or in_size < 1 or out_size * in_size > MAX_CELLS:
                raise WireError("out_size x in_size", f"{out_size} x {in_size}", f"1 to {MAX_CELLS} cells")
            if not request.name or len(request.name) > 200:
                raise WireError("name", repr(request.name[:40]), "a crossbar name of 1 to 200 characters")
            if len(session.crossbars) >= MAX_CROSSBARS:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {MAX_CROSSBARS} crossbars per session")
            return pb.CreateReply(crossbar=self._add(session, request.name,
                                                     self.factory(request.name, out_size, in_size)))
        return self._guard(context, "create", lambda: self._on_session(request.call, request, "create", apply))

    @staticmethod
    def _add(session: Session, name: str, crossbar: Crossbar) -> int:
        key = session.next_id
        session.next_id += 1
        session.crossbars[key] = Entry(name, crossbar)
        return key

    # ------------------------------------------------------------------ verbs
    def Forward(self, request, context):
        def apply(session, e):
            x = self._tensor(request.input, "input", (None, e.crossbar.shape[1]))
            return pb.ReadReply(output=to_wire(e.crossbar.forward(x)))
        return self._guard(context, "forward", lambda: self._on_crossbar(request.target, request, "forward", apply))

    def Backward(self, request, context):
        def apply(session, e):
            d = self._tensor(request.input, "input", (None, e.crossbar.shape[0]))
            return pb.ReadReply(output=to_wire(e.crossbar.backward(d)))
        return self._guard(context, "backward", lambda: self._on_crossbar(request.target, request, "backward", apply))

    def Update(self, request, context):
        def apply(session, e):
            out_size, in_size = e.crossbar.shape
            x = self._tensor(request.x, "x", (None, in_size))
            d = self._tensor(request.d, "d", (x.shape[0], out_size))
            if not math.isfinite(request.lr):
                raise WireError("lr", request.lr, "a finite learning rate")
            e.crossbar.update(x, d, request.lr)
            return pb.Empty()
        return self._guard(context, "update", lambda: self._on_crossbar(request.target, request, "update", apply))

    def Weights(self, request, context):
        return self._guard(context, "weights", lambda: self._on_crossbar(
            request.target, request, "weights", lambda s, e: pb.WeightsReply(weights=to_wire(e.crossbar.weights()))))

    def ReadWeights(self, request, context):
        return self._guard(context, "read_weights", lambda: self._on_crossbar(
            request.target, request, "read_weights",
            lambda s, e: pb.WeightsReply(weights=to_wire(e.crossbar.read_weights()))))

    def Program(self, request, context):
        def apply(session, e):
            e.crossbar.program(self._tensor(request.weights, "weights", e.crossbar.shape))
            return pb.Empty()
        return self._guard(context, "program", lambda: self._on_crossbar(request.target, request, "program", apply))

    def PostUpdateStep(self, request, context):
        def apply(session, e):
            e.crossbar.post_update_step()
            return pb.Empty()
        return self._guard(context, "post_update_step", lambda: self._on_crossbar(
            request.target, request, "post_update_step", apply))

    def Drift(self, request, context):
        def apply(session, e):
            if not (math.isfinite(request.seconds) and request.seconds >= 0):
                raise WireError("seconds", request.seconds, "finite seconds >= 0")
            e.crossbar.drift(request.seconds)
            return pb.Empty()
        return self._guard(context, "drift", lambda: self._on_crossbar(request.target, request, "drift", apply))

    def Clone(self, request, context):
        def apply(session, e):
            if len(session.crossbars) >= MAX_CROSSBARS:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {MAX_CROSSBARS} crossbars per session")
            return pb.CloneReply(crossbar=self._add(session, e.name, e.crossbar.clone()))
        return self._guard(context, "clone", lambda: self._on_crossbar(request.target, request, "clone", apply))

    def Restore(self, request, context):
        def apply(session, e):
            source = session.crossbars.get(request.source)
            if source is None or source.crossbar.shape != e.crossbar.shape:
                raise WireError("source", request.source, f"a crossbar of this session of shape {e.crossbar.shape}")
            e.crossbar.restore(source.crossbar)
            return pb.Empty()
        return self._guard(context, "restore", lambda: self._on_crossbar(request.target, request, "restore", apply))

    # ------------------------------------------------------------------ reaper
    def reap(self, now: float | None = None) -> list[str]:
        """Free the sessions idle for longer than the timeout; returns their ids."""
        now = time.monotonic() if now is None else now
        with self.lock:
            gone = [k for k, s in self.sessions.items() if now - s.last_seen > self.session_timeout]
            for k in gone:
                session = self.sessions.pop(k)
                session.crossbars.clear()
        for k in gone:
            self.expired += 1
            self.log(f"session {k[:8]} freed after {self.session_timeout:g} s without a call")
        return gone


@dataclass(eq=False)
class ChipServer:
    """A running gRPC server of a :class:`ChipService` and its reaper thread. ``port`` is the bound
    port (ask for 0 to get a free one)."""

    service: ChipService
    server: grpc.Server
    port: int
    stop_reaper: threading.Event

    @classmethod
    def start(cls, device: DeviceSpec, token: str, host: str = "127.0.0.1", port: int = 0,
              session_timeout: float = 60.0, max_tensor_bytes: int = MAX_TENSOR_BYTES,
              tls: tuple[bytes, bytes] | None = None, workers: int = 8,
              interceptors: Sequence[grpc.ServerInterceptor] = (), log: Callable[[str], None] | None = None
              ) -> ChipServer:
        """Serve ``device`` on ``host:port``; ``tls`` = (certificate chain PEM, private key PEM)."""
        service = ChipService(device, token, session_timeout, max_tensor_bytes, log)
        limit = 2 * max_tensor_bytes + 2**20  # the transport lets through what the wire check refuses
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), interceptors=list(interceptors),
                             options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", limit),
                                      ("grpc.so_reuseport", 0)])
        pb_grpc.add_ChipServicer_to_server(service, server)
        address = f"{host}:{port}"
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
        if bound == 0:
            raise OSError(f"cannot listen on {address}")
        server.start()
        stop = threading.Event()

        def reaper():
            while not stop.wait(min(max(session_timeout / 4, 0.05), 1.0)):
                service.reap()

        threading.Thread(target=reaper, name="chiploop-session-reaper", daemon=True).start()
        return cls(service, server, bound, stop)

    def stop(self, grace: float | None = None) -> None:
        self.stop_reaper.set()
        self.server.stop(grace).wait()


def serve_forever(server: ChipServer) -> None:
    """Block until the server stops (Ctrl-C or SIGTERM raise KeyboardInterrupt in the CLI)."""
    try:
        server.server.wait_for_termination()
    finally:
        server.stop(grace=1.0)
        print(f"chiploop serve: stopped; {sum(server.service.applied.values())} calls applied", file=sys.stderr)
