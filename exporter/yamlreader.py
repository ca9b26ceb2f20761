"""The typed YAML reader that targets (config.py) and json_exporter modules (jsonexp/modules.py) are read with.

A `Reader` is one mapping at a dotted key path; every problem is a `ConfigError` naming the file, the key and what
was expected, and warnings (a setting accepted but not applied as written) go to one list for the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


class ConfigError(ValueError):
    """A configuration problem: `source` is the file (or `--target`), `key` the dotted key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source, self.key = source, key
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str, source: str, key: str, env: Mapping[str, str]) -> str:
    """Replace `${VAR}` and `${VAR:-default}` from the environment; `$$` is a literal `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(source, key, f"environment variable {name} is not set (write ${{{name}:-}} for empty)")

    return _ENV.sub(sub, value)


class Reader:
    """Typed access to one YAML mapping at `path`: unknown keys are errors, `${VAR}` is expanded in strings.

    A key whose value is null reads as absent. Children share the file's environment and warnings list.
    """

    def __init__(
        self, data: Any, source: str, path: str, env: Mapping[str, str], warnings: list[str] | None = None
    ) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)", f"expected a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = {str(k): v for k, v in data.items()}
        self.source, self.path, self.env = source, path, env
        self.warnings: list[str] = [] if warnings is None else warnings

    def key(self, name: str) -> str:
        """The dotted key of `name` in this mapping."""
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        """A `ConfigError` at `name` (for the caller to raise)."""
        return ConfigError(self.source, self.key(name), message)

    def warn(self, name: str, message: str) -> None:
        """Record a warning at `name`: shown by --check-config and logged at (re)load."""
        self.warnings.append(f"{self.source}: {self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        """Whether `name` is given (a null value is not)."""
        return self.data.get(name) is not None

    def only(self, allowed: Sequence[str], *, unsupported: Sequence[str] = (), case_variants: bool = False) -> None:
        """Reject keys not in `allowed`; with `case_variants`, read `valueType` as `valuetype` and warn."""
        for name in list(self.data):
            if name in allowed:
                continue
            if case_variants and name.lower() in allowed:
                self.warn(name, f"read as {name.lower()!r} (json_exporter ignores this spelling)")
                self.data[name.lower()] = self.data.pop(name)
                continue
            hint = " (not supported by horizon-keda)" if name in unsupported else ""
            raise self.error(name, f"unknown key{hint}; expected one of: {', '.join(allowed)}")

    def string(self, name: str, default: str | None = None, *, expand: bool = True) -> str | None:
        """A string (a number is read as its text); `${VAR}` expanded unless `expand` is false."""
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(name, f"expected a string, got {type(value).__name__}")
        text = str(value)
        return interpolate(text, self.source, self.key(name), self.env) if expand else text

    def number(self, name: str, default: float, *, minimum: float, integer: bool = False) -> float:
        """A number at least `minimum`; a string is expanded and parsed (`timeout: ${TIMEOUT:-5}`)."""
        value = self.data.get(name, default)
        if isinstance(value, str):
            value = interpolate(value, self.source, self.key(name), self.env)
            try:
                value = float(value)
            except ValueError:
                raise self.error(name, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {value!r}")
        if value < minimum or (integer and value != int(value)):
            kind = "an integer" if integer else "a number"
            raise self.error(name, f"expected {kind} >= {minimum:g}, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """true or false, nothing else."""
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def child(self, name: str) -> Reader | None:
        """The mapping at `name`, or None when it is not given."""
        if not self.has(name):
            return None
        return Reader(self.data[name], self.source, self.key(name), self.env, self.warnings)

    def mapping(self, name: str) -> Reader:
        """The mapping at `name`; an empty one when it is not given."""
        return self.child(name) or Reader({}, self.source, self.key(name), self.env, self.warnings)

    def sequence(self, name: str, expected: str) -> list[Any]:
        """The list at `name` (empty when not given), or an error saying `expected` (e.g. "a list of targets")."""
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise self.error(name, f"expected {expected}")
        return value

    def readers(self, name: str, expected: str) -> list[Reader]:
        """The list of mappings at `name`, each as a Reader at `name[i]`."""
        return [
            Reader(item, self.source, f"{self.key(name)}[{i}]", self.env, self.warnings)
            for i, item in enumerate(self.sequence(name, expected))
        ]
