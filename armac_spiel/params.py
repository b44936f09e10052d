"""Configs: frozen dataclasses built, validated and reported by one mechanism, `Params`.

Every config of the toolkit derives from `Params`: ARMAC's `ARMACConfig`, the scheduler
suite and its sections, the baselines' `*Params`, the recorder's `RecorderConfig` and the
run layer's `RunSpec`.

- Built: on construction each field is coerced to its annotated type (`float` takes any
  real number and numeric strings, since PyYAML reads `1e-4` as a string; `int` takes
  integers, never bools; `tuple[int, ...]` takes a list; a `Params` field takes a mapping,
  its keys then dotted (`meta_regret.K`); `Optional[X]` takes None; `X | Literal["auto"]`
  takes the word or an X), then `validate()` runs. `Cls.from_dict(d, base=None,
  where=None)` builds one from a mapping (YAML, JSON, `--set`) over `base` or the
  defaults, and names unknown keys.
- Validated: a subclass's `validate()` states each rule as `self.need(ok, field, allowed)`.
- Reported: `to_dict()` is plain data (tuples as lists, sections as dicts): config.json.

Every error is a `ConfigError` of one form, "config field 'x' = v: must be ...": the field
(dotted inside a section), its value and what is allowed; `where` (a file, a flag)
prefixes it with where the value came from. Errors about flags name the flag instead:
"--flag=v: must be ...".
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from typing import Any, Mapping, Optional


class ConfigError(ValueError):
  """A bad configuration value, key or flag; the message names it, its value and what is
  allowed. `key`, `value`, `allowed`: the field's (dotted) name, its value and what is
  allowed, for an error about a config field (None otherwise)."""

  def __init__(self, message: str, key: Optional[str] = None, value: Any = None,
               allowed: Optional[str] = None):
    super().__init__(message)
    self.key, self.value, self.allowed = key, value, allowed

  @classmethod
  def field(cls, key: str, value: Any, allowed: str) -> "ConfigError":
    """The error about config field `key` holding `value`."""
    return cls(f"config field '{key}' = {value!r}: must be {allowed}", key, value, allowed)

  def within(self, section: str) -> "ConfigError":
    """The same error with its field named inside `section` (`section.key`)."""
    if self.key is None:
      return self
    return ConfigError.field(f"{section}.{self.key}", self.value, self.allowed)

  def at(self, where: str) -> "ConfigError":
    """The same error prefixed with where the value came from (a file, a flag)."""
    return ConfigError(f"{where}: {self}", self.key, self.value, self.allowed)


class Params:
  """Base of the config dataclasses (see the module docstring). Subclasses are
  `@dataclasses.dataclass(frozen=True)` and override `validate()`."""

  def __post_init__(self):
    types_ = _field_types(type(self))
    for f in dataclasses.fields(self):
      object.__setattr__(self, f.name, _coerce(types_[f.name], getattr(self, f.name), f.name))
    self.validate()

  def validate(self) -> None:
    """Checks the values with `self.need`; called on construction."""

  def need(self, ok: bool, key: str, allowed: str) -> None:
    """Raises ConfigError naming field `key` (dotted for a section's field), its value and
    `allowed`, unless `ok`."""
    if not ok:
      raise ConfigError.field(key, functools.reduce(getattr, key.split("."), self), allowed)

  @classmethod
  def from_dict(cls, d: Optional[Mapping[str, Any]], base: Optional["Params"] = None,
                where: Optional[str] = None):
    """`cls` from the mapping `d` over `base` (default: the defaults); unknown keys and bad
    values raise ConfigError naming the key, prefixed with `where` when given."""
    try:
      return cls._build({} if d is None else d, base)
    except ConfigError as e:
      if where is None:
        raise
      raise e.at(where) from e

  @classmethod
  def _build(cls, d, base):
    if not isinstance(d, Mapping):
      raise ConfigError(f"{cls.__name__}: must be a mapping of its fields, got {d!r}")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    for k, v in d.items():
      if k not in names:
        close = difflib.get_close_matches(str(k), names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError.field(k, v, f"a known field ({hint}known: {', '.join(names)})")
    if base is not None:
      return dataclasses.replace(base, **d)
    for f in fields:
      if (f.name not in d and f.default is dataclasses.MISSING
          and f.default_factory is dataclasses.MISSING):
        raise ConfigError(f"config field '{f.name}' is missing: it must be given", f.name)
    return cls(**d)

  def to_dict(self) -> dict:
    """Plain data: tuples as lists, sections as dicts (what config.json holds)."""
    return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

  def replace(self, **kw):
    return dataclasses.replace(self, **kw)


def plain(x):
  """`x` as plain data (what JSON gives back): Params and mappings as dicts, tuples as
  lists, recursively."""
  if isinstance(x, Params):
    return x.to_dict()
  if isinstance(x, Mapping):
    return {k: plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [plain(v) for v in x]
  return x


@functools.cache
def _field_types(cls) -> dict:
  return typing.get_type_hints(cls)


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_LISTS = {int: "a list of integers", float: "a list of numbers", str: "a list of strings"}


def _coerce(typ, value, key: str):
  """`value` as type `typ`, or a ConfigError naming field `key`."""
  origin, args = typing.get_origin(typ), typing.get_args(typ)
  if typ is Any:
    return value
  if origin in (typing.Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    words = [w for a in args if typing.get_origin(a) is typing.Literal
             for w in typing.get_args(a)]
    if isinstance(value, str) and value in words:
      return value
    (inner,) = [a for a in args if a is not type(None) and typing.get_origin(a) is not
                typing.Literal]
    try:
      return _coerce(inner, value, key)
    except ConfigError:
      if not words:
        raise
      raise ConfigError.field(key, value, " or ".join(
          [_NAMES.get(inner, str(inner))] + [repr(w) for w in words])) from None
  if isinstance(typ, type) and issubclass(typ, Params):
    if isinstance(value, typ):
      return value
    if not isinstance(value, Mapping):
      raise ConfigError.field(key, value, f"a mapping (the {key} section)")
    try:
      return typ.from_dict(value)
    except ConfigError as e:
      raise e.within(key) from e
  if origin is tuple or typ is tuple:
    inner = args[0] if args else Any
    what = _LISTS.get(inner, "a list")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, collections.abc.Iterable):
      raise ConfigError.field(key, value, what)
    try:
      return tuple(_coerce(inner, v, key) for v in value)
    except ConfigError:
      raise ConfigError.field(key, value, what) from None
  if origin is collections.abc.Mapping or typ is dict:
    if not isinstance(value, Mapping):
      raise ConfigError.field(key, value, "a mapping")
    return value
  ok = _SCALARS[typ](value)
  if ok is None:
    raise ConfigError.field(key, value, _NAMES[typ])
  return ok


def _as_bool(v):
  return v if isinstance(v, bool) else None


def _as_int(v):
  return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else None


def _as_float(v):
  if isinstance(v, bool) or not isinstance(v, (numbers.Real, str)):
    return None
  try:
    f = float(v)
  except ValueError:
    return None
  return None if math.isnan(f) else f


def _as_str(v):
  return v if isinstance(v, str) else None


_SCALARS = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str}
