"""`key=value` settings from the command line, typed by what they set.

One syntax for what a user sets by name besides `--config.a.b=value` (which ml_collections
parses against the config): the options after a config file's ':'
(`configs/vitc.py:size=4gf,tuned`) and the ModelSpec overrides of convert, bench and the locality
report (`--override depth=2 --override stem_strides=2,2,1`).

Each value is parsed by the type of what it sets, strictly: booleans are true/false, 1/0 or
yes/no (any case; a bare `key` means true), ints and floats must parse as such, tuples are
comma-separated elements with optional brackets (`(8,16,32)`, `8,16,32`), and a Literal accepts
only its choices. big_vision's `configs/common.py parse_arg` types config options by their default
the same way; here a wrong value is an error naming the setting instead of a silent string.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Mapping
from typing import Any

_TRUE = ('true', '1', 'yes')
_FALSE = ('false', '0', 'no')


def did_you_mean(name: str, known: Iterable[str]) -> str:
  """' Did you mean x?' when `name` is close to one of `known`, else ''."""
  close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
  return f' Did you mean {" or ".join(close)}?' if close else ''


def parse_value(text: str, kind: Any) -> Any:
  """`text` as a value of `kind` (bool, int, float, str, tuple[T, ...], Literal[...]).

  Raises ValueError with what `kind` accepts.
  """
  text = text.strip()
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin is typing.Literal:
    if text not in args:
      raise ValueError(f'choose one of {", ".join(map(str, args))}')
    return text
  if origin is tuple:
    return _parse_tuple(text, args)
  if kind is bool:
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise ValueError('use true or false (or 1/0, yes/no)')
  if kind is int:
    try:
      return int(text)
    except ValueError:
      raise ValueError('use an integer') from None
  if kind is float:
    try:
      return float(text)
    except ValueError:
      raise ValueError('use a number') from None
  if kind is str:
    return text
  raise TypeError(f'No command-line syntax for values of type {kind!r}.')


def _parse_tuple(text: str, args: tuple) -> tuple:
  if text[:1] + text[-1:] in ('()', '[]'):
    text = text[1:-1]
  items = text.split(',') if text.strip() else []
  if len(items) > 1 and not items[-1].strip():  # (8,) as Python writes a 1-tuple
    items.pop()
  if len(args) == 2 and args[1] is Ellipsis:
    return tuple(parse_value(t, args[0]) for t in items)
  if len(items) != len(args):
    raise ValueError(f'use {len(args)} comma-separated values')
  return tuple(parse_value(t, a) for t, a in zip(items, args))


def parse(items: Iterable[str], kinds: Mapping[str, Any], *, what: str) -> dict[str, Any]:
  """`['depth=2', 'tuned']` -> {'depth': 2, 'tuned': True}, each value typed by `kinds[key]`.

  `what` is how the user spells these settings ('--override', 'config option'); every error
  names it, the setting and what to type instead.
  """
  out = {}
  for item in items:
    key, has_value, text = item.partition('=')
    key = key.strip()
    if key not in kinds:
      raise ValueError(
        f'Unknown {what} {key!r} in {item!r}.{did_you_mean(key, kinds)} '
        f'Known: {", ".join(sorted(kinds))}.'
      )
    if not has_value:
      if kinds[key] is not bool:
        raise ValueError(f'{what} {item!r}: write it as {key}=value.')
      out[key] = True
      continue
    try:
      out[key] = parse_value(text, kinds[key])
    except ValueError as e:
      raise ValueError(f'{what} {key}={text.strip()}: {e}.') from None
  return out
