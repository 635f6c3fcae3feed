"""Name -> object registries: one place that lists the valid names of each kind.

Methods, scores, selectors, datasets and protocols are chosen by name from
flags and configs. Each kind has one `Registry`; a lookup of an unknown name
fails with a `ValueError` that lists the valid names, so no caller needs its own
if/elif chain or its own copy of the list.

    SCORES = Registry("pruning score")

    @SCORES.register("el2n")
    def el2n(...): ...

    SCORES.get("el2n")        # -> el2n
    SCORES.get("elnn")        # ValueError: Unknown pruning score 'elnn'; valid: el2n, ...
    SCORES.names()            # ('el2n', ...), in registration order
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """An ordered mapping from names to objects of one kind.

  Attributes:
    kind: what the names name (e.g. 'condensation method'); quoted in errors.
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._items: dict[str, T] = {}

  def register(self, name: str, value: T | None = None):
    """Registers `value` under `name`; without `value`, returns a decorator.

    Raises:
      ValueError: if `name` is already registered (one place for each name).
    """
    def add(obj: T) -> T:
      if name in self._items:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._items[name] = obj
      return obj

    return add if value is None else add(value)

  def get(self, name: str) -> T:
    """The object named `name`.

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    try:
      return self._items[name]
    except (KeyError, TypeError):
      raise ValueError(f"Unknown {self.kind} {name!r}; valid: {', '.join(self._items)}") from None

  def names(self) -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(self._items)

  def __contains__(self, name: object) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def __repr__(self) -> str:
    return f"Registry({self.kind!r}: {', '.join(self._items)})"


def choice_validator(kind: str, choices) -> Callable[[str], None]:
  """A check `fn(value)` raising `ValueError` naming `kind` and `choices` for other values."""
  choices = tuple(choices)

  def check(value: str) -> None:
    if value not in choices:
      raise ValueError(f"Unknown {kind} {value!r}; valid: {', '.join(choices)}")

  return check
