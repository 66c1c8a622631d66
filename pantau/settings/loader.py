"""Loading: the YAML file, `${VAR}` expansion, the secrets file, `PANTAU__...` overrides,
and errors that name the key and where it came from."""

from __future__ import annotations

import difflib
import os.path
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from pantau.settings.base import _SECRET_KEYS, SettingsError
from pantau.settings.root import Settings

ENV_PREFIX = "PANTAU__"
DEFAULT_CONFIG = Path("configs/pantau.yaml")
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


SECRETS_FILE_ENV = "PANTAU_SECRETS_FILE"


def secrets_file(config_path: Path, environ: Mapping[str, str]) -> Path:
    """Where secrets are kept outside the environment: $PANTAU_SECRETS_FILE, else
    `.pantau/secrets.env` beside the configuration's folder (the development services'
    state folder, where `pantau services up` makes one)."""
    named = environ.get(SECRETS_FILE_ENV)
    if named:
        return Path(named)
    return Path(os.path.abspath(config_path)).parent.parent / ".pantau" / "secrets.env"


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (the format of docker compose's .env); blank lines and # comments
    are skipped, values are taken as they stand."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise SettingsError(f"{path}:{number}: expected NAME=value")
        values[name.strip()] = value.strip()
    return values


def with_secrets(config_path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment, completed from the secrets file (if there is one) for the names it
    does not set itself: the environment always wins."""
    path = secrets_file(config_path, environ)
    if not path.is_file():
        return dict(environ)
    return {**read_env_file(path), **environ}


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read, interpolate, override and validate; raises SettingsError with every problem.
    Secrets missing from `environ` are taken from the secrets file (`with_secrets`)."""
    environ = with_secrets(path, environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        # libyaml's parser where PyYAML has it: every command reads the file at start-up, and
        # the pure-Python one takes tens of milliseconds on a config with hundreds of sensors.
        raw = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(
            f"{path}: expected a mapping at the top level, got {type(raw).__name__}"
        )

    problems: list[str] = []
    data = _interpolate(raw, environ, (), path, problems)
    from_env = _apply_env_overrides(data, environ, problems)
    if problems:
        raise SettingsError("\n".join(problems))
    try:
        return Settings.model_validate(data, context={"base_dir": path.absolute().parent})
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, path, from_env)) from exc


def settings_from_mapping(data: Mapping[str, Any], base_dir: Path) -> Settings:
    """Validate an in-memory mapping (tests, tools); relative paths resolve against base_dir."""
    return Settings.model_validate(dict(data), context={"base_dir": base_dir})


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def expand_variables(text: str, environ: Mapping[str, str], unset: Callable[[str], str]) -> str:
    """`${VAR}` and `${VAR:-default}` in `text` from `environ`: a variable that is set wins,
    even when set to nothing; else its default; else `unset(name)` gives the text to put
    there, or raises."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        return unset(name)

    return _VAR.sub(substitute, text)


def _interpolate(
    node: Any,
    environ: Mapping[str, str],
    loc: tuple[str | int, ...],
    path: Path,
    problems: list[str],
) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, environ, (*loc, k), path, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, environ, (*loc, i), path, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def unset(name: str) -> str:
            problems.append(
                f"{path}: {_loc_text(loc)}: environment variable {name} is not set "
                "(and the value gives no default)"
            )
            return ""

        return expand_variables(node, environ, unset)
    return node


def _apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str], problems: list[str]
) -> dict[tuple[str | int, ...], str]:
    origin: dict[tuple[str | int, ...], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            problems.append(f"environment variable {name}: names no setting")
            continue
        raw_value = environ[name]
        value: Any = raw_value
        if raw_value.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw_value)
            except yaml.YAMLError as exc:
                problems.append(f"environment variable {name}: not valid YAML: {exc}")
                continue
        node: Any = data
        loc: tuple[str | int, ...] = ()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            key: str | int = int(part) if part.isdigit() else part
            if isinstance(node, list):
                if not isinstance(key, int) or key >= len(node):
                    problems.append(
                        f"environment variable {name}: {_loc_text(loc)} has {len(node)} items; "
                        f"{part!r} is not one of their indexes"
                    )
                    break
            elif not isinstance(node, dict):
                problems.append(f"environment variable {name}: {_loc_text(loc)} is not a section")
                break
            loc = (*loc, key)
            if last:
                node[key] = value
                origin[loc] = name
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return origin


def _loc_text(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _format_errors(
    exc: ValidationError, path: Path, from_env: Mapping[tuple[str | int, ...], str]
) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        origin = str(path)
        for i in range(len(loc), 0, -1):
            if loc[:i] in from_env:
                origin = f"environment variable {from_env[loc[:i]]}"
                break
        where = _loc_text(loc)
        if error["type"] == "extra_forbidden":
            key = loc[-1] if loc else "?"
            message = f"unknown key {key!r}"
            candidates = _known_keys(loc[:-1])
            close = difflib.get_close_matches(str(key), candidates, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            elif candidates:
                message += f" (known keys: {', '.join(sorted(candidates))})"
        else:
            message = error["msg"]
            secret = any(isinstance(p, str) and p in _SECRET_KEYS for p in loc)
            given = error.get("input")
            # Only a single value is quoted: a whole section may hold a secret (a gateway's
            # `secret`, a camera's URL) that must not reach a terminal or a log.
            scalar = isinstance(given, str | int | float | bool) or given is None
            if error["type"] != "missing" and not secret and "input" in error and scalar:
                shown = repr(given)
                message += f" (got {shown[:80]})"
        lines.append(f"{origin}: {where}: {message}")
    return "\n".join(lines)


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the section at `loc`, for 'did you mean' hints."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_of(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    origin = get_origin(annotation)
    if origin in (tuple, list, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    if origin is Annotated:
        return _model_of(get_args(annotation)[0])
    return None
