"""Frozen-dataclass specs, validated completely whenever one is built: from YAML or in Python.

Every spec in chiploop (device, experiment, rule options) is a frozen dataclass that subclasses
:class:`Spec` and whose fields carry their allowed values in :func:`spec_field`. Building one
runs :func:`check_spec` (each field's type, Literal values and declared range) and then the
class's own cross-field :meth:`Spec.check`, so ``DeviceSpec(dw_min=-1.0)`` fails exactly as
``{dw_min: -1}`` in a YAML file does. :func:`from_mapping` turns a plain mapping (from
``yaml.safe_load``) into a spec, converting YAML's forms (lists, numbers written as strings,
nested mappings, preset names) on the way; any problem becomes a single :class:`SpecError` that
names the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml


class SpecError(ValueError):
    """A bad value in a spec: names the field, the value, what is allowed and the file."""

    def __init__(self, field: str, value: Any, allowed: str, source: str | None = None):
        self.field, self.value, self.allowed, self.source = field, value, allowed, source
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}field '{self.field}': got {self.value!r}; allowed: {self.allowed}"

    def in_source(self, source: str) -> SpecError:
        """The same error, attributed to ``source`` if it has no file yet."""
        if self.source is None:
            self.source = source
            self.args = (self._message(),)
        return self


def spec_field(default: Any = dataclasses.MISSING, *, doc: str = "", unit: str = "",
               low: float | None = None, high: float | None = None, low_open: bool = False,
               ideal: Any = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its documentation, unit and inclusive range [low, high].

    ``low_open=True`` makes the lower bound exclusive (``low < value``). ``ideal`` marks a
    device nonideality and gives the value that switches it off.
    """
    meta = {"doc": doc, "unit": unit, "low": low, "high": high, "low_open": low_open, "ideal": ideal}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe_range(f: dataclasses.Field) -> str:
    """Human text for the allowed values of a numeric field, e.g. ``0 < value <= 1``."""
    low, high = f.metadata.get("low"), f.metadata.get("high")
    parts = []
    if low is not None:
        parts.append(f"{low} {'<' if f.metadata.get('low_open') else '<='} value")
    if high is not None:
        parts.append(f"value <= {high}" if not parts else f"<= {high}")
    return " ".join(parts) if parts else "any value"


class Spec:
    """Base of every spec dataclass: checks run right after construction (equinox's rule).

    First :func:`check_spec` (every field against its type and declared range), then
    :meth:`check`. Subclasses are ``@dataclass(frozen=True)`` and put checks that involve
    several fields in ``check``, not in ``__post_init__``; ``dataclasses.replace`` checks again.
    """

    def __post_init__(self) -> None:
        check_spec(self)
        self.check()

    def check(self) -> None:
        """Checks that involve several fields; raise a SpecError that names one of them."""


def check_spec(obj: Any) -> None:
    """Check every field of a spec dataclass against its type (Literal values included) and its
    declared range; the first bad field raises a SpecError naming it. Nested specs are not
    walked: each checked itself when it was built. The checks of a class are made once."""
    for name, check in _field_checks(type(obj)):
        check(getattr(obj, name), name)


_FIELD_CHECKS: dict[type, tuple[tuple[str, Callable[[Any, str], None]], ...]] = {}


def _field_checks(cls: type) -> tuple[tuple[str, Callable[[Any, str], None]], ...]:
    """(name, check) of every init field of a spec class, from its annotation and its range."""
    found = _FIELD_CHECKS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELD_CHECKS[cls] = tuple((f.name, _with_range(f, _type_check(hints[f.name])))
                                           for f in dataclasses.fields(cls) if f.init)
    return found


def _with_range(f: dataclasses.Field, check: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """``check`` followed by the range ``[low, high]`` declared in the field's metadata (numbers only)."""
    low, high, low_open = f.metadata.get("low"), f.metadata.get("high"), f.metadata.get("low_open")
    if low is None and high is None:
        return check

    def check_range(value: Any, name: str) -> None:
        check(value, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise SpecError(name, value, describe_range(f))
    return check_range


def check_value(tp: Any, value: Any, name: str) -> None:
    """A Python value of a spec field is of the field's type ``tp``, else SpecError for ``name``."""
    _type_check(tp)(value, name)


# what a scalar field accepts, in the words of the error
_SCALARS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def _is_scalar(tp: type, value: Any) -> bool:
    """Whether ``value`` is a ``tp`` (bool, int, float, str); a bool is no number, an int is a float."""
    if isinstance(value, bool):
        return tp is bool
    if tp is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, tp)


def _check_literal(tp: Any, value: Any, name: str) -> None:
    args = typing.get_args(tp)
    if value in args and not isinstance(value, bool):
        return
    close = difflib.get_close_matches(str(value), [str(a) for a in args], 1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(name, value, _type_name(tp) + hint)


def _union_options(tp: Any, value: Any, name: str, check: Callable[[Any, Any, str], Any]) -> Any:
    """``check`` ``value`` against the members of a Union: None for Optional, else the first member
    that takes it; an Optional[X] reports X's own error, a wider Union every member's."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:
        return check(options[0], value, name)
    errors = []
    for arg in options:
        try:
            return check(arg, value, name)
        except SpecError as err:
            errors.append(err.allowed)
    raise SpecError(name, value, " or ".join(errors))


@functools.cache
def _type_check(tp: Any) -> Callable[[Any, str], None]:
    """A function ``(value, name)`` that raises SpecError unless ``value`` is a ``tp``, made once per type.

    The types :func:`_coerce` reads from YAML, checked without converting: a nested spec must
    already be one, a tuple field takes a list or a tuple, a float field an int."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return lambda value, name: _union_options(tp, value, name, check_value)
    if origin is Literal:
        return lambda value, name: _check_literal(tp, value, name)
    if dataclasses.is_dataclass(tp) or hasattr(tp, "from_value"):
        def check_instance(value: Any, name: str) -> None:
            if not isinstance(value, tp):
                raise SpecError(name, value, f"a {tp.__name__}")
        return check_instance
    if origin is tuple:
        item = _type_check(args[0])

        def check_items(value: Any, name: str) -> None:
            if not isinstance(value, (list, tuple)):
                raise SpecError(name, value, f"a list of {_type_name(args[0])}")
            for i, v in enumerate(value):
                item(v, f"{name}[{i}]")
        return check_items
    if origin is dict or tp is dict:
        def check_mapping(value: Any, name: str) -> None:
            if not isinstance(value, Mapping):
                raise SpecError(name, value, "a mapping")
        return check_mapping
    if tp in _SCALARS:
        def check_scalar(value: Any, name: str) -> None:
            if not _is_scalar(tp, value):
                raise SpecError(name, value, _SCALARS[tp])
        return check_scalar
    if tp is Any:
        return lambda value, name: None
    if isinstance(tp, type):  # a part of a composite (a chain's rule and transforms): an instance of it
        return lambda value, name: None if isinstance(value, tp) else _raise(SpecError(name, value, f"a {tp.__name__}"))
    raise TypeError(f"spec field type {tp!r} is not supported")  # a bug in chiploop, not in the spec


def _raise(err: Exception) -> None:
    raise err


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        keys = [f.name for f in dataclasses.fields(tp) if f.init]
        return "a mapping with keys " + ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Convert a YAML value to ``tp`` or raise SpecError for field ``name``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_options(tp, value, name, _coerce)
    if origin is Literal:
        _check_literal(tp, value, name)
        return value
    if hasattr(tp, "from_value"):  # specs with their own shorthand (a preset name, say)
        return tp.from_value(value, name)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, prefix=name + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(name, value, f"a list of {_type_name(args[0])}")
        return tuple(_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise SpecError(name, value, "a mapping")
        return dict(value)
    if tp in _SCALARS:
        if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise SpecError(name, value, "a number") from None
        if not _is_scalar(tp, value):
            raise SpecError(name, value, _SCALARS[tp])
        return float(value) if tp is float else value
    if tp is Any:
        return value
    raise TypeError(f"spec field {name}: unsupported type {tp!r}")  # a bug in chiploop, not in the spec


def field_at(cls: type, dotted: str) -> dataclasses.Field | None:
    """The dataclass field that a dotted key (``device.dw_min``) names, through nested specs; None if none."""
    found = None
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            return None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return None
        found = fields[part]
        hint = typing.get_type_hints(cls)[part]
        options = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        cls = options[0] if options else hint
    return found


def from_mapping(cls: type, data: Any, *, source: str | None = None, prefix: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from ``data``, checking keys, types and ranges.

    Unknown keys are named with the valid ones and the closest match; building ``cls`` runs its
    own checks (:class:`Spec`: every field's type and range, then the cross-field ``check``).
    """
    try:
        if not isinstance(data, Mapping):
            raise SpecError(prefix.rstrip(".") or "<top level>", data, _type_name(cls))
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs = {}
        for key, value in data.items():
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, 1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise SpecError(prefix + str(key), value,
                                f"known keys are {', '.join(sorted(fields))}{hint}")
            kwargs[key] = _coerce(hints[key], value, prefix + key)
        missing = [n for n, f in fields.items() if n not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SpecError(prefix + missing[0], None, "a value is required")
        try:
            obj = cls(**kwargs)
            if not isinstance(obj, Spec):  # a plain dataclass: the same checks, once here
                check_spec(obj)
        except SpecError as err:
            if prefix and not err.field.startswith(prefix):
                err.field = prefix + err.field
                err.args = (err._message(),)
            raise
        return obj
    except SpecError as err:
        raise err.in_source(source) if source else err


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with ``yaml.safe_load``; a missing or malformed file is a SpecError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError("<file>", str(path), f"a readable YAML file ({err.strerror})", str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError("<file>", str(path), f"valid YAML ({yaml_problem(err)})", str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError("<top level>", data, "a mapping of fields", str(path))
    return data


def yaml_problem(err: yaml.YAMLError) -> str:
    """What is wrong in a YAML text and where: ``expected ',' or ']' at line 1, column 8``."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def to_plain(obj: Any) -> Any:
    """A spec as plain YAML/JSON-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def identity(obj: Any) -> Any:
    """What sets a spec apart from its class's defaults, as plain data: the fields whose value differs
    from the field's default (a nested spec by its class name and its own identity). A run's id hashes
    this, so adding a field with a default (a new option) leaves every existing id, ledger and run
    directory valid; changing a default does change the ids of specs that relied on it."""
    if not dataclasses.is_dataclass(obj):
        return to_plain(obj)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if default is not dataclasses.MISSING and type(value) is type(default) and value == default:
            continue
        if dataclasses.is_dataclass(value):
            out[f.name] = {"class": type(value).__name__, **identity(value)}
        else:
            out[f.name] = to_plain(value)
    return out


def set_dotted(data: dict, dotted_key: str, value: Any) -> dict:
    """Return a copy of nested ``data`` with ``a.b.c`` set to ``value``."""
    out = dict(data)
    head, _, rest = dotted_key.partition(".")
    if not rest:
        out[head] = value
        return out
    inner = out.get(head)
    out[head] = set_dotted(inner if isinstance(inner, dict) else {}, rest, value)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` from the command line; the value is read as YAML (``[64, 10]``, ``1e-3``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SpecError("--set", text, "key=value with a dotted key, e.g. device.dw_min=0.001")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SpecError(f"--set {key}", raw, "a YAML value") from None
