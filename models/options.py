"""Grouped model options: a config group (`model.rpn`, `model.roi`, ...) as a frozen dataclass.

A detector field such as `rpn: RPNOptions = RPNOptions()` accepts the dataclass or any mapping
(a ConfigDict group from the config, a dict); `resolve` fills the missing keys from the defaults
and names any unknown key with the valid ones.
"""
import dataclasses
from typing import Any


def resolve(cls: type, value: Any, group: str):
  """`value` (None, a mapping or a `cls`) as a `cls`; ValueError naming an unknown key."""
  if isinstance(value, cls):
    return value
  items = dict(value.items()) if value is not None else {}
  valid = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(items) - valid)
  if unknown:
    raise ValueError(f'unknown config.model.{group} field(s) {", ".join(unknown)}; valid: '
                     f'{", ".join(sorted(valid))}')
  return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in items.items()})


def resolve_fields(module, **groups: type):
  """In a flax module's __post_init__: each named field resolved to its options class."""
  for name, cls in groups.items():
    object.__setattr__(module, name, resolve(cls, getattr(module, name), name))
