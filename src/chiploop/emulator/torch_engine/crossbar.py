"""A crossbar on the torch engine: aihwkit 1.1.0's pulsed single devices and periphery, seeded and
batched over a leading population axis.

The state of P independent chips' copies of one crossbar sits in tensors with a leading axis P:
apparent weights ``W`` (P, out, in), persistent weights (devices with write noise) and the
device-to-device parameters of :func:`devices.populate`. One ``torch.Generator`` per crossbar draws
every number: device draws from ``(construction_seed or run seed, name)``, cycle-to-cycle and read
noise from ``(run seed, name)``, so the same spec and seed give the same run bit for bit. A clone
gets a generator of its own, seeded from its parent's seed and a clone counter (the parent's
stream does not move), so K clones give K independent realisations and a run with probes on takes
the same training draws as one without.

A layer wider than ``tile_size`` is cut into tiles as on aihwkit: each tile has its own update
management and its own read periphery, block outputs are summed digitally.

The pulsed update (docs/torch_engine.md): coincidence counts from :mod:`pulses`; then per cell its
pulses in the order the samples come, each through :func:`devices.pulse` (clipped at the bounds
after every pulse). For constant_step, a cell that cannot reach a bound within the batch (the
distance to both bounds exceeds ``max(dwmin) (n + 6.5 σ √n)`` for its n pulses: the drift of n
steps plus 6.5 standard deviations of the noise's running sum, reached with probability
< 1e-10) gets the batch's pulses in closed form, ``Δw = dwmin_up (N_up + σ √N_up ξ₁) - dwmin_down (N_down + σ √N_down ξ₂)``,
equal in distribution to the sum of its per-pulse steps. Other cells of affine devices
(constant_step, linear_step, soft_bounds: each pulse is ``w -> clip(α w + a, lo, hi)``) get all their
pulses as one composed map (:func:`compose`, log2 L steps); exp_step and pow_step go pulse by pulse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator.torch_engine import devices, io
from chiploop.emulator.torch_engine.pulses import Trains, line_rows, per_sample, totals, trains

# closed-form constant-step update only for cells whose pulse path stays inside the bounds but with
# probability < 2 Φ(-6.5) ≈ 1e-10: drift at most n·dwmin, Gaussian noise partial sums bounded by the
# reflection principle, P(max_t S_t > a) = 2 P(S_n > a)
SAFE_SIGMAS = 6.5


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (SHA-256 of their repr), the same in every process."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def compose(alpha: torch.Tensor, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The composition, in order along the last axis, of the maps ``f_t(w) = clip(α_t w + a_t, l_t, u_t)``
    (α_t > 0), as one map of the same form, in log2(L) vectorised steps.

    With ``α_g > 0``, ``g∘f(w) = clip(α_g α_f w + α_g a_f + a_g, clip(α_g l_f + a_g, l_g, u_g),
    clip(α_g u_f + a_g, l_g, u_g))``; the identity is ``(1, 0, -inf, inf)``.
    """
    K = alpha.shape[0]
    while alpha.shape[1] > 1:
        if alpha.shape[1] % 2:
            alpha = torch.cat([alpha, alpha.new_ones(K, 1)], 1)
            a = torch.cat([a, a.new_zeros(K, 1)], 1)
            lo = torch.cat([lo, lo.new_full((K, 1), -float("inf"))], 1)
            hi = torch.cat([hi, hi.new_full((K, 1), float("inf"))], 1)
        af, ag, gf, gg = a[:, 0::2], a[:, 1::2], alpha[:, 0::2], alpha[:, 1::2]
        lf, lg, uf, ug = lo[:, 0::2], lo[:, 1::2], hi[:, 0::2], hi[:, 1::2]
        alpha, a = gg * gf, gg * af + ag
        lo = torch.minimum(torch.maximum(gg * lf + ag, lg), ug)
        hi = torch.minimum(torch.maximum(gg * uf + ag, lg), ug)
    return alpha[:, 0], a[:, 0], lo[:, 0], hi[:, 0]


def affine_walk(spec: DeviceSpec, w: torch.Tensor, seq: torch.Tensor, par: dict[str, torch.Tensor],
                xi: torch.Tensor) -> torch.Tensor | None:
    """Pulses ``seq`` (K, L) in {-1, 0, +1} on K cells of an affine device (constant_step,
    linear_step, soft_bounds), each clipped at the bounds, by :func:`compose`: exact, the same
    per-pulse steps and clips as pulse by pulse, with noise ``xi`` (K, L). None if a pulse's slope
    α is not positive (then the caller goes pulse by pulse)."""
    alpha, a = devices.affine(spec, seq, par, xi)
    if not bool((alpha > 0).all()):
        return None
    live = seq != 0
    K, L = seq.shape
    lo = torch.where(live, par["min_bound"].unsqueeze(1).expand(K, L), -float("inf"))
    hi = torch.where(live, par["max_bound"].unsqueeze(1).expand(K, L), float("inf"))
    ref = par.get("reference") if spec.response == "soft_bounds" else None
    v = w if ref is None else w + ref
    alpha, a, lo, hi = compose(alpha, a, lo, hi)
    v = torch.minimum(torch.maximum(alpha * v + a, lo), hi)
    return v if ref is None else v - ref


def scan_constant_step(w: torch.Tensor, seq: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                       lo: torch.Tensor, hi: torch.Tensor, sigma: float, generator: torch.Generator,
                       xi: torch.Tensor | None = None) -> torch.Tensor:
    """K constant-step cells (``w``, ``up``, ``down``, ``lo``, ``hi`` (K,)) through the pulses ``seq``
    (K, L) in {+1, -1, 0 (none)}, each ``w <- clip(w + s dwmin_s (1 + σ ξ), lo, hi)``: exact, by
    :func:`compose` with α = 1 (the maps ``clip(w + a_t, l_t, u_t)``), in log2 of the most pulses
    any of the cells gets. Each cell's pulses are first moved to the front in their order (a row
    without a pulse is the identity), padding is the identity ``(0, -inf, inf)``. ``xi`` (K, L'):
    the noise of the cells' pulses in order (drawn when not given)."""
    K = seq.shape[0]
    seq = compact(seq)
    size = seq.shape[1]
    if K == 0 or not bool(seq[:, 0].any()):
        return w
    if xi is None:
        xi = torch.randn(seq.shape, generator=generator, device=seq.device)
    elif xi.shape[1] < size:
        xi = torch.cat([xi, xi.new_zeros(K, size - xi.shape[1])], 1)
    a = seq * torch.where(seq > 0, up.unsqueeze(1), down.unsqueeze(1)) * (1 + sigma * xi[:, :size])
    inf = float("inf")
    live = seq != 0
    lu = torch.stack([torch.where(live, lo.unsqueeze(1), -inf), torch.where(live, hi.unsqueeze(1), inf)])  # (2, K, L)
    while a.shape[1] > 1:
        ag = a[:, 1::2]
        lg, ug = lu[:, :, 1::2].unbind(0)
        lu = torch.clamp(lu[:, :, 0::2] + ag, lg, ug)      # g∘f with α_g = α_f = 1
        a = a[:, 0::2] + ag
    return torch.clamp(w + a[:, 0], lu[0, :, 0], lu[1, :, 0])


def compact(seq: torch.Tensor) -> torch.Tensor:
    """Each row's nonzero entries moved to its front, in order, zeros after: (K, L') with L' the
    most nonzero entries of any row rounded up to a power of two (a cumulative count and one scatter)."""
    K = seq.shape[0]
    live = seq != 0
    pos = live.cumsum(1)
    L = int(pos[:, -1].max()) if K and seq.shape[1] else 0
    size = 1 << max(L - 1, 0).bit_length()
    packed = seq.new_zeros(K, size + 1)                    # column ``size`` collects the rows without a pulse
    return packed.scatter_(1, torch.where(live, pos - 1, size), seq)[:, :size]


def one_sided_walk(w: torch.Tensor, seq: torch.Tensor, up: torch.Tensor, down: torch.Tensor, lo: torch.Tensor,
                   hi: torch.Tensor, upper: torch.Tensor, sigma: float, generator: torch.Generator,
                   xi: torch.Tensor | None = None) -> torch.Tensor:
    """K constant-step cells through the pulses ``seq`` (K, R) in {+1, -1, 0 (none)}, clipped after
    every pulse at one bound only: ``hi`` (K,) from above where ``upper``, ``lo`` from below
    elsewhere. With ``a_t = s_t dwmin_s (1 + σ ξ_t)`` and ``S_k = Σ_{t<=k} a_t`` (Lindley's
    recursion for ``w_t = min(w_{t-1} + a_t, u)``):

        w_R = min(w_0 + S_R, u + S_R - max_{k: a pulse} S_k) = S_R + min(w_0, u - max_k S_k),

    and at a lower bound ``w_R = S_R + max(w_0, l - min_k S_k)``. The max (min) may run over every
    row: a row without a pulse repeats the sum of the pulse before it, or is 0 before the first, and
    a 0 changes nothing as ``l <= w_0 <= u``. Exact whenever the other bound is out of reach.
    ``xi`` (K, R): the noise of each row's pulse (drawn when not given)."""
    if xi is None:
        xi = torch.randn(seq.shape, generator=generator, device=seq.device)
    a = torch.where(seq > 0, up.unsqueeze(1), down.unsqueeze(1)).mul_(seq)
    if sigma > 0:
        a.addcmul_(a, xi, value=sigma)                                     # a (1 + σ ξ)
    S = a.cumsum(1)
    low, high = torch.aminmax(S, dim=1)
    return torch.where(upper, torch.minimum(w, hi.sub(high)), torch.maximum(w, lo.sub(low))).add_(S[:, -1])


@dataclass(eq=False)
class TorchCrossbar:
    """One weight layer (``shape`` = (out, in)) of P chips, on the torch engine."""

    spec: DeviceSpec
    W: torch.Tensor                      # (P, out, in) apparent weights: what reads see
    par: dict[str, torch.Tensor]         # device-to-device parameters, each (P, out, in)
    generator: torch.Generator
    seed: int                            # this crossbar's noise seed
    persistent: torch.Tensor | None = None  # (P, out, in) persistent weights (write-noise devices)
    clones: int = field(default=0)
    _consts: tuple = field(default=(), repr=False, compare=False)   # per-cell constants of the closed form
    _line_tables: dict = field(default_factory=dict, repr=False, compare=False)   # cell -> its two lines, per shape
    _group: tuple = field(default=(), repr=False, compare=False)   # the stack it steps with (group.py)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, spec: DeviceSpec, out_size: int, in_size: int, name: str = "layer0", seed: int = 0,
               population: int = 1) -> TorchCrossbar:
        """Crossbar ``name`` of a chip of ``spec`` (P = ``population`` chips with their own devices)."""
        device = torch.device(spec.engine_device)
        dgen = torch.Generator(device=device)
        dgen.manual_seed(derive_seed("devices", spec.construction_seed or seed, name))
        par = devices.populate(spec, (population, out_size, in_size), dgen, device)
        noise_seed = derive_seed("noise", seed, name)
        gen = torch.Generator(device=device)
        gen.manual_seed(noise_seed)
        W = torch.zeros(population, out_size, in_size, device=device)
        persistent = W.clone() if spec.write_noise_std > 0 else None
        return cls(spec, W, par, gen, noise_seed, persistent)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape[1:])

    @property
    def population(self) -> int:
        return self.W.shape[0]

    @property
    def write_noise(self) -> float:
        return self.spec.write_noise_std * self.spec.dw_min

    def _cast(self, v: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``v`` as (P, B, n) float32 on the engine's device (a view when it already is), and whether
        it came as one chip's 2-D batch."""
        if v.dtype is not torch.float32 or v.device != self.W.device:
            v = v.to(device=self.W.device, dtype=torch.float32)
        if v.dim() == 2:
            P = self.population
            return (v.unsqueeze(0) if P == 1 else v.unsqueeze(0).expand(P, *v.shape)), P == 1
        return v, False

    # ------------------------------------------------------------------ reads
    def _read(self, v: torch.Tensor, transposed: bool) -> torch.Tensor:
        """Reads come back on the caller's device (the engine may run on another). An input already
        float32 on the engine's device is not cast; one chip's 2-D input is read against its (out, in)
        weights as it is (no population axis to add and take off again)."""
        device = v.device
        W = self.W
        if v.dtype is not torch.float32 or device != W.device:
            v = v.to(device=W.device, dtype=torch.float32)
        if v.dim() == 2:
            if W.shape[0] == 1:
                W = W[0]
            else:
                v = v.unsqueeze(0).expand(W.shape[0], *v.shape)
        size = self.spec.tile_size
        out_size, in_size = W.shape[-2:]
        if out_size <= size and in_size <= size:
            y = io.read(self.spec, W, v, self.generator, transposed)
        else:
            rows, cols = _blocks(out_size, size), _blocks(in_size, size)
            if not transposed:
                y = torch.cat([sum(io.read(self.spec, W[..., r, c], v[..., c], self.generator) for c in cols)
                               for r in rows], -1)
            else:
                y = torch.cat([sum(io.read(self.spec, W[..., r, c], v[..., r], self.generator, True) for r in rows)
                               for c in cols], -1)
        return y if y.device == device else y.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` read through the periphery: x (B, in) -> (B, out), or (P, B, in) -> (P, B, out)."""
        return self._read(x, False)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        """``Wᵀ d``: d (B, out) -> (B, in), or (P, B, out) -> (P, B, in)."""
        return self._read(d, True)

    # ------------------------------------------------------------------ update
    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        """Pulsed ``W <- W - lr Σ_b d_b x_bᵀ`` on every chip of the population (x (P, B, in) or (B, in))."""
        x, _ = self._cast(x)
        d, _ = self._cast(d)
        size = self.spec.tile_size
        out_size, in_size = self.shape
        rows, cols = _blocks(out_size, size), _blocks(in_size, size)
        if len(rows) == 1 and len(cols) == 1:
            self._update_block(rows[0], cols[0], x, d, lr)
            return
        for r in rows:
            for c in cols:
                self._update_block(r, c, x[..., c], d[..., r], lr)

    def _update_block(self, r: slice, c: slice, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        spec = self.spec
        t = trains(x, d, lr, devices.granularity(spec), spec.desired_bl, self.generator)
        if t is None:
            return
        signed, total = totals(t)                                    # (P, o, i): S and N
        whole = (r.start, r.stop, c.start, c.stop) == (0, self.shape[0], 0, self.shape[1])
        store = self.persistent if self.persistent is not None else self.W
        w = store if whole else store[:, r, c]
        par = self.par if whole else {k: v[:, r, c] for k, v in self.par.items()}
        if spec.response == "constant_step":
            w = self._constant_step(t, w, par, signed, total)
        else:
            touched = total > 0
            cells = touched.nonzero()
            if len(cells):
                p, i, j = cells.unbind(1)
                direction = -(torch.sign(d[p, :, i]) * torch.sign(x[p, :, j]))      # (K, B)
                w = w.index_put((p, i, j), self._pulse_by_pulse(w[p, i, j], {k: v[p, i, j] for k, v in par.items()},
                                                                per_sample(t, cells), direction))
        if whole:
            if self.persistent is not None:
                self.persistent = w
            else:
                self.W = w
        else:
            store[:, r, c] = w
        if self.persistent is not None:
            noise = self.write_noise * torch.randn(w.shape, generator=self.generator, device=w.device)
            self.W[:, r, c] = torch.where(total > 0, w + noise, self.W[:, r, c])

    def _closed_form_constants(self, par: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Per-cell constants of the constant-step closed form, computed once per device state
        (kept while ``dwmin_up``, ``dwmin_down`` and the bounds are the same tensors, unmodified):
        with ``N_up = (N - S)/2``, ``N_down = (N + S)/2``, mean ``h N - g S``, variance ``q N + r S``,
        reach ``max(up, down) N``; the table (5, cells) of up, down, min and max bound and their
        midpoint that the walks gather from; the smallest half range of any cell."""
        ts = (par["dwmin_up"], par["dwmin_down"], par["min_bound"], par["max_bound"])
        key = tuple((id(v), v._version) for v in ts)
        if not self._consts or self._consts[0] != key:
            up, down, lo, hi = ts
            s2 = self.spec.dw_min_std ** 2
            half = (hi - lo) * 0.5
            consts = ((up - down) * 0.5, (up + down) * 0.5, (up * up + down * down) * (0.5 * s2),
                      (down * down - up * up) * (0.5 * s2), torch.maximum(up, down),
                      torch.stack([v.reshape(-1) for v in (up, down, lo, hi, lo + half)]),
                      float(half.min()) if half.numel() else 0.0)
            self._consts = (key, consts, ts)                                 # ts: keeps the ids alive
        return self._consts[1]

    def _lines_of(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """For each cell of a (P, out, in) block (row-major), its output line ``p C + in + i`` and its
        input line ``p C + j`` in the trains (C = in + out): (2, P out in), kept per shape."""
        table = self._line_tables.get(shape)
        if table is None:
            P, o, n = shape
            f = torch.arange(P * o * n, device=device)
            q = f // n
            base = q // o * (o + n)
            table = torch.stack([base + n + q % o, base + f % n])
            self._line_tables[shape] = table
        return table

    def _constant_step(self, t: Trains, w: torch.Tensor, par: dict[str, torch.Tensor], signed: torch.Tensor,
                       total: torch.Tensor) -> torch.Tensor:
        """constant_step: the closed form where no clip can act, the exact scan elsewhere.

        With N_up, N_down a cell's up and down pulses of the batch (``S``, ``N`` from :func:`totals`),
        ``Δw = dwmin_up N_up - dwmin_down N_down + σ sqrt(dwmin_up² N_up + dwmin_down² N_down) ξ``:
        one normal per cell, as the per-pulse noises of both signs add up to one Gaussian, so equal
        in distribution to the pulses one by one while no clip acts. Used unless
        ``max(dwmin_up, dwmin_down) N + 6.5 s`` (s: the standard deviation above) exceeds the
        distance to the nearer bound: the walk's drift is at most ``max(dwmin) N`` and, by Lévy's
        inequality, its noise's running sum passes 6.5 s with probability < 2 Φ(-6.5) ≈ 1e-10.
        Those cells (only touched ones: an untouched cell has reach 0) are walked exactly: by
        :func:`one_sided_walk` when the far bound is out of reach by the same criterion, else by
        :func:`scan_constant_step`."""
        sigma = self.spec.dw_min_std
        h, g, q, r, big, table, half = self._closed_form_constants(par)
        mean = torch.mul(h, total).addcmul_(g, signed, value=-1.0).add_(w)     # w + mean of Δw
        reach = torch.mul(big, total)
        if sigma > 0:
            std = torch.mul(q, total).addcmul_(r, signed).clamp_(min=0.0).sqrt_()
            noise = torch.randn(w.shape, generator=self.generator, device=w.device)
            new = mean.addcmul_(std, noise)
            reach.add_(std, alpha=SAFE_SIGMAS)
        else:
            new = mean
        near = torch.minimum(par["max_bound"] - w, w - par["min_bound"])
        flat = (reach > near).view(-1).nonzero().view(-1)
        if len(flat):
            up, down, lo, hi, mid = table.index_select(1, flat).unbind(0)
            w0 = w.reshape(-1).index_select(0, flat)
            rows = line_rows(t, self._lines_of(tuple(w.shape), w.device).index_select(1, flat).view(-1))
            out = one_sided_walk(w0, rows, up, down, lo, hi, w0 >= mid, sigma, self.generator)   # the nearer bound
            if float(reach.max()) >= half:             # some cell may reach its far bound too: those get the scan
                both = reach.view(-1).index_select(0, flat) >= torch.maximum(hi - w0, w0 - lo)
                if bool(both.any()):
                    k = both.nonzero().view(-1)
                    out[k] = scan_constant_step(w0[k], rows[k], up[k], down[k], lo[k], hi[k], sigma, self.generator)
            new.view(-1).index_copy_(0, flat, out)
        return new

    def _pulse_by_pulse(self, w: torch.Tensor, par: dict[str, torch.Tensor], counts: torch.Tensor,
                        direction: torch.Tensor) -> torch.Tensor:
        """K cells' pulses (``counts`` (K, B) of ``direction`` ±1), one at a time, sample after sample
        (exact for every device); affine devices by :func:`affine_walk`."""
        B = counts.shape[1]
        count = counts.to(torch.int64)
        cum = count.cumsum(1)                                              # (K, B)
        total = cum[:, -1]
        length = int(total.max())
        pos = torch.arange(length, device=w.device).expand(len(w), length).contiguous()
        sample = torch.searchsorted(cum, pos, right=True).clamp(max=B - 1)  # (K, L): whose pulse it is
        seq = torch.gather(direction, 1, sample) * (pos < total.unsqueeze(1))  # (K, L) in {-1, 0, +1}
        xi = torch.randn(seq.shape, generator=self.generator, device=w.device)
        if self.spec.response in devices.AFFINE:
            walked = affine_walk(self.spec, w, seq, par, xi)
            if walked is not None:
                return walked
        for step in range(length):
            w = devices.pulse(self.spec, w, seq[:, step], par, self.generator, xi[:, step])
        return w

    # ------------------------------------------------------------------ experimenter's verbs
    def _one(self, t: torch.Tensor) -> torch.Tensor:
        """One chip's (out, in) or the population's (P, out, in), on the CPU (the experimenter's side)."""
        return (t[0] if self.population == 1 else t).to("cpu", copy=True)

    def weights(self) -> torch.Tensor:
        """The apparent weights (out, in) (P = 1) or (P, out, in)."""
        return self._one(self.W)

    def read_weights(self) -> torch.Tensor:
        """Least-squares estimate from ``10 · in`` noisy forward reads of N(0, 1) inputs (as aihwkit's
        ``read_weights``)."""
        n_in = self.shape[1]
        X = torch.randn(10 * n_in, n_in, generator=self.generator, device=self.W.device)
        Y = self.forward(X.unsqueeze(0).expand(self.population, *X.shape))      # (P, N, out)
        est = torch.linalg.lstsq(X.unsqueeze(0).expand(self.population, *X.shape), Y).solution  # (P, in, out)
        return self._one(est.transpose(-1, -2))

    def program(self, W: torch.Tensor) -> None:
        """Set the weights: clipped to each device's bounds; write-noise devices get one fresh draw."""
        W = W.detach().to(device=self.W.device, dtype=torch.float32)
        W = W.expand_as(self.W) if W.dim() == 2 else W
        W = torch.minimum(torch.maximum(W, self.par["min_bound"]), self.par["max_bound"])
        if self.persistent is not None:
            self.persistent = W.clone()
            self.W = W + self.write_noise * torch.randn(W.shape, generator=self.generator, device=W.device)
        else:
            self.W = W.clone()

    def load_hidden(self, hidden: dict[str, torch.Tensor]) -> None:
        """Take device parameters named as aihwkit's ``get_hidden_parameters`` names them ((out, in)
        or (P, out, in)); ``persistent_weights`` sets the persistent weights."""
        for k, v in hidden.items():
            v = v.to(device=self.W.device, dtype=torch.float32).expand_as(self.W).clone()
            if k == "persistent_weights":
                if self.persistent is not None:
                    self.persistent = v
            elif k in self.par:
                self.par[k] = v

    def set_state(self, W: torch.Tensor, persistent: torch.Tensor | None = None) -> None:
        """Set apparent (and persistent) weights exactly, without clipping or noise (tests, clones)."""
        self.W = W.to(self.W).expand_as(self.W).clone()
        if self.persistent is not None:
            self.persistent = (W if persistent is None else persistent).to(self.W).expand_as(self.W).clone()

    def clone(self) -> TorchCrossbar:
        self.clones += 1
        seed = derive_seed("clone", self.seed, self.clones)
        gen = torch.Generator(device=self.W.device)
        gen.manual_seed(seed)
        return TorchCrossbar(self.spec, self.W.clone(), {k: v.clone() for k, v in self.par.items()}, gen, seed,
                             None if self.persistent is None else self.persistent.clone())

    def restore(self, source: TorchCrossbar) -> None:
        """Weights and devices become ``source``'s again; this crossbar's generator runs on."""
        self.W = source.W.clone()
        self.persistent = None if source.persistent is None else source.persistent.clone()
        self.par = {k: v.clone() for k, v in source.par.items()}

    def expand(self, population: int) -> TorchCrossbar:
        """P exact copies of this (single-chip) crossbar in one population, with a generator of its own."""
        if self.population != 1:
            raise ValueError(f"expand needs a single chip, this crossbar holds {self.population}")
        c = self.clone()
        c.W = c.W.expand(population, -1, -1).clone()
        c.par = {k: v.expand(population, -1, -1).clone() for k, v in c.par.items()}
        if c.persistent is not None:
            c.persistent = c.persistent.expand(population, -1, -1).clone()
        return c

    @classmethod
    def stack(cls, crossbars: list[TorchCrossbar]) -> TorchCrossbar:
        """One population of the chips ``crossbars`` (same spec and shape; their own devices and
        weights), stepped together; a generator of its own, seeded from theirs."""
        first = crossbars[0]
        if any(c.spec != first.spec or c.shape != first.shape for c in crossbars):
            raise ValueError("stack needs crossbars of one spec and one shape")
        seed = derive_seed("stack", tuple(c.seed for c in crossbars))
        gen = torch.Generator(device=first.W.device)
        gen.manual_seed(seed)
        persistent = None if first.persistent is None else torch.cat([c.persistent for c in crossbars])
        return cls(first.spec, torch.cat([c.W for c in crossbars]),
                   {k: torch.cat([c.par[k] for c in crossbars]) for k in first.par}, gen, seed, persistent)

    def member(self, p: int) -> TorchCrossbar:
        """Chip ``p`` of the population as a crossbar of its own (a copy, with a generator of its own)."""
        seed = derive_seed("member", self.seed, p)
        gen = torch.Generator(device=self.W.device)
        gen.manual_seed(seed)
        return TorchCrossbar(self.spec, self.W[p:p + 1].clone(), {k: v[p:p + 1].clone() for k, v in self.par.items()},
                             gen, seed, None if self.persistent is None else self.persistent[p:p + 1].clone())

    def post_update_step(self) -> None:
        """Per-batch decay ``w <- w · decay_scale`` of devices with a finite lifetime (reset bias 0)."""
        decay = self.par.get("decay_scales")
        if decay is not None:
            if self.persistent is not None:
                self.persistent = self.persistent * decay
            self.W = self.W * decay

    def drift(self, seconds: float) -> None:
        """No drift on the torch engine (the spec refuses a drift model there)."""
