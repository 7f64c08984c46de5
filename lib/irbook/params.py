"""Chapter parameters: declaration, profiles and validation.

Every chapter notebook has one papermill ``parameters`` cell. Its names and allowed values are
declared here once (see :mod:`irbook.chapters`), so that the command line, the notebook and the
tests validate them the same way, *before* any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("smoke", "demo", "full")


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One notebook parameter: its type, allowed values and help text."""

    name: str
    type: type
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    nullable: bool = False

    def allowed(self) -> str:
        """Human-readable description of the allowed values."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.type is bool:
            text = "true or false"
        elif self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else _number(self.low, self.type)
            high = "inf" if self.high is None else _number(self.high, self.type)
            text = f"a {self.type.__name__} in [{low}, {high}]"
        else:
            text = f"a {self.type.__name__}"
        return text + (" or null" if self.nullable else "")

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (possibly a command-line string) and check it is allowed."""
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")
                              and value not in (self.choices or ())):
            if self.nullable:
                return None
            raise ParameterError(
                f"parameter '{self.name}' may not be empty; allowed: {self.allowed()}"
            )
        try:
            converted = _convert(value, self.type)
        except (TypeError, ValueError):
            raise ParameterError(
                f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()}"
            ) from None
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ParameterError(
                f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()} (finite)"
            )
        if self.choices is not None and converted not in self.choices:
            raise ParameterError(
                f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()}"
            )
        out_of_range = (self.low is not None and converted < self.low) or (
            self.high is not None and converted > self.high
        )
        if out_of_range:
            raise ParameterError(
                f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()}"
            )
        return converted


def _number(value: float, kind: type) -> str:
    return str(int(value)) if kind is int else f"{value:g}"


def _convert(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    raise TypeError(f"unsupported parameter type {kind}")


def refuse_profile_override(overrides: Mapping[str, Any] | None) -> None:
    """The profile is chosen with ``--profile`` (``run_chapter(key, profile)``), never as an
    override: ``-p profile full`` would otherwise be silently dropped."""
    given = (overrides or {}).get("profile")
    if given is not None:
        raise ParameterError(
            f"parameter 'profile' cannot be given with -p (got {given!r}); use --profile, one "
            f"of {', '.join(PROFILES)}"
        )


@dataclass(frozen=True)
class ParamSpec:
    """All parameters of one chapter and the values each profile gives them."""

    params: Sequence[Param]
    profiles: Mapping[str, Mapping[str, Any]]
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})
        for profile, values in self.profiles.items():
            missing = set(self._by_name) - set(values) - {"profile"}
            if missing:
                raise ValueError(f"profile {profile!r} lacks values for {sorted(missing)}")

    @property
    def names(self) -> list[str]:
        return ["profile", *self._by_name]

    def describe(self) -> list[dict[str, Any]]:
        """One row per parameter: name, type, per-profile defaults, allowed values, help."""
        rows = [
            {
                "name": "profile",
                "type": "str",
                "allowed": "one of " + ", ".join(repr(p) for p in PROFILES),
                "help": "execution profile: smoke (CI), demo (laptop CPU), full (GPU, real data)",
                **{f"default[{p}]": p for p in PROFILES},
            }
        ]
        for param in self.params:
            row = {
                "name": param.name,
                "type": param.type.__name__,
                "allowed": param.allowed(),
                "help": param.help,
            }
            row.update({f"default[{p}]": self.profiles[p][param.name] for p in PROFILES})
            rows.append(row)
        return rows

    def resolve(self, profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Profile values updated by ``overrides``; every value validated.

        ``None`` in ``overrides`` means "keep the profile's value", which is how a notebook's
        parameters cell marks a parameter that was not given.
        """
        if profile not in PROFILES:
            raise ParameterError(
                f"parameter 'profile' got {profile!r}; allowed: "
                + ", ".join(repr(p) for p in PROFILES)
            )
        refuse_profile_override(overrides)
        overrides = dict(overrides or {})
        overrides.pop("profile", None)
        unknown = sorted(set(overrides) - set(self._by_name))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(self.names)}"
            )
        values: dict[str, Any] = {"profile": profile}
        for name, param in self._by_name.items():
            given = overrides.get(name)
            raw = self.profiles[profile][name] if given is None else given
            values[name] = param.coerce(raw)
        return values
