"""Sweep specs and their deterministic expansion into experiment specs.

A sweep spec (YAML) is a base experiment plus ``grid`` (dotted key -> list; the product),
``zip`` (dotted key -> list; varied together), ``random`` (dotted key -> distribution, ``samples``
draws from a generator seeded by ``random_seed``) and ``seeds``. A run's identity is the hash of
its fully resolved ExperimentSpec, so the same sweep gives the same ids in every process, and a
changed sweep adds only the runs that are new (the runner's ledger skips the others).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chiploop.experiments.spec import ExperimentSpec, apply_overrides, attribute, set_override
from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, spec_field


@dataclass(frozen=True)
class Distribution(Spec):
    """One random axis: ``uniform`` / ``log_uniform`` on [low, high], or ``choice`` among ``values``."""

    kind: Literal["uniform", "log_uniform", "choice"] = spec_field("uniform", doc="distribution")
    low: float = spec_field(0.0, doc="lower end (uniform, log_uniform)")
    high: float = spec_field(1.0, doc="upper end (uniform, log_uniform)")
    values: tuple[Any, ...] = spec_field((), doc="the choices (choice)")

    def check(self) -> None:
        if self.kind == "choice" and not self.values:
            raise SpecError("values", [], "a non-empty list for kind choice")
        if self.kind != "choice" and not self.low < self.high:
            raise SpecError("high", self.high, f"greater than low ({self.low})")
        if self.kind == "log_uniform" and self.low <= 0:
            raise SpecError("low", self.low, "0 < value for kind log_uniform")

    def draw(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.values[rng.randrange(len(self.values))]
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


@dataclass(frozen=True)
class SweepSpec(Spec):
    """A base experiment and the axes it is varied along."""

    base: dict = spec_field(default_factory=dict, doc="the experiment every run starts from")
    grid: dict = spec_field(default_factory=dict, doc="dotted key -> list of values; all combinations")
    zip: dict = spec_field(default_factory=dict, doc="dotted key -> list of values, varied together")
    random: dict = spec_field(default_factory=dict, doc="dotted key -> {kind, low, high, values}")
    samples: int = spec_field(1, doc="random draws (when `random` is set)", low=1, high=100000)
    random_seed: int = spec_field(0, doc="seed of the random draws", low=0)
    seeds: tuple[int, ...] = spec_field((0,), doc="experiment seeds every configuration runs with")
    population: bool = spec_field(True, doc="train runs that differ only in seed as one population of chips "
                                  "(torch engine, MLP, backprop / feedback_alignment / direct_feedback_alignment)")

    def check(self) -> None:
        for name in ("grid", "zip"):
            for key, values in getattr(self, name).items():
                if not isinstance(values, list) or not values:
                    raise SpecError(f"{name}.{key}", values, "a non-empty list of values")
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise SpecError("zip", {k: len(v) for k, v in self.zip.items()}, "lists of one common length")
        for key, value in self.random.items():
            from_mapping(Distribution, value, prefix=f"random.{key}.")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML; ``base`` may be a mapping or a path to an experiment YAML."""
    data = load_yaml(path)
    if isinstance(data.get("base"), str):
        data = {**data, "base": load_yaml(Path(path).parent / data["base"])}
    return from_mapping(SweepSpec, data, source=str(path))


def expand(sweep: SweepSpec, source: str = "<sweep>", overrides: Iterable[str] = ()) -> list[ExperimentSpec]:
    """Every run of the sweep, validated, in a deterministic order: grid x zip x random x seeds.

    ``overrides`` (``KEY=VALUE``, the CLI's ``--set``) change the base experiment; a key the sweep
    varies cannot be set, and an error in a field an override set names that ``--set``."""
    overrides = list(overrides)
    base, keys = apply_overrides(sweep.base, overrides)
    swept = swept_keys(sweep)
    for key, text in zip(keys, overrides):
        clash = [k for k in swept if k == key or k.startswith(key + ".") or key.startswith(k + ".")]
        if clash:
            raise SpecError("--set", text, f"a field the sweep does not vary ({clash[0]} is swept)")
    grid_keys = list(sweep.grid)
    grid = [dict(zip(grid_keys, combo)) for combo in itertools.product(*(sweep.grid[k] for k in grid_keys))]
    n_zip = len(next(iter(sweep.zip.values()))) if sweep.zip else 1
    zipped = [{k: v[i] for k, v in sweep.zip.items()} for i in range(n_zip)]
    rng = random.Random(sweep.random_seed)
    axes = {k: from_mapping(Distribution, v) for k, v in sweep.random.items()}
    drawn = [{k: d.draw(rng) for k, d in axes.items()} for _ in range(sweep.samples if axes else 1)]
    specs = []
    by_key = dict(zip(keys, overrides))
    for g, z, r, seed in itertools.product(grid, zipped, drawn, sweep.seeds):
        data = dict(base)
        for key, value in {**g, **z, **r, "seed": seed}.items():
            data = set_override(data, key, value)
        try:
            specs.append(from_mapping(ExperimentSpec, data))
        except SpecError as err:
            raise attribute(err, by_key, f"{source}: run {len(specs)}") from None
    return specs


def swept_keys(sweep: SweepSpec) -> list[str]:
    """The dotted keys the sweep varies (and ``seed``): the columns of its results table."""
    return [*sweep.grid, *sweep.zip, *sweep.random, "seed"]
