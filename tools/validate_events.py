#!/usr/bin/env python3
"""Validate newline-delimited Chorus events against a JSON Schema.

Usage:
    python3 tools/validate_events.py SCHEMA FILE...

Each non-blank line of each FILE ("-" reads standard input) is either a bare
event object or a protocol frame {"type":"event","sub":...,"cursor":...,"event":{...}}
as chorusd writes to subscribers; for a frame, its "event" is validated.

Prints "N events valid" when every line is valid; otherwise prints one line per
error, "FILE:LINE: PATH: MESSAGE", and exits with status 1. Usage errors exit 2.

Other schemas in the same directory as SCHEMA (*.schema.json) are registered
under their $id, so a schema may refer to its siblings (the outbound schema
uses the event schema's part definitions).

Importable: validate_lines(schema_path, lines) -> list[str] returns the error
messages ("line N: PATH: MESSAGE") for an iterable of lines, empty when valid.

Lines are parsed strictly, like chorusd's own parser: an object that repeats a
name, NaN and Infinity are errors.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Iterable, List, Optional, Tuple

try:
    import jsonschema
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
except ImportError as exc:  # pragma: no cover - depends on the machine
    sys.stderr.write(f"validate_events.py needs the jsonschema package (pip install jsonschema): {exc}\n")
    raise SystemExit(2)

__all__ = ["validate_lines", "load_validator", "SchemaLoadError"]


class SchemaLoadError(Exception):
    """The schema file could not be read, parsed or is not a valid JSON Schema."""


class _StrictJSONError(ValueError):
    pass


def _reject_duplicates(pairs: List[Tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _StrictJSONError(f'duplicate key "{key}"')
        out[key] = value
    return out


def _reject_constant(name: str) -> object:
    raise _StrictJSONError(f"{name} is not JSON")


def _parse_strict(text: str) -> object:
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _load_json_file(path: str) -> object:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return _parse_strict(f.read())
    except OSError as exc:
        raise SchemaLoadError(f"{path}: {exc.strerror or exc}") from exc
    except (ValueError, _StrictJSONError) as exc:
        raise SchemaLoadError(f"{path}: not valid JSON: {exc}") from exc


_validator_cache: dict = {}


def load_validator(schema_path: str) -> Draft202012Validator:
    """Loads SCHEMA (and its sibling *.schema.json files, for $ref) into a draft 2020-12 validator."""
    key = os.path.abspath(schema_path)
    cached = _validator_cache.get(key)
    if cached is not None:
        return cached
    schema = _load_json_file(schema_path)
    if not isinstance(schema, dict):
        raise SchemaLoadError(f"{schema_path}: a schema must be a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise SchemaLoadError(f"{schema_path}: not a valid draft 2020-12 schema: {exc.message}") from exc

    resources = []
    directory = os.path.dirname(key)
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".schema.json"):
            continue
        path = os.path.join(directory, name)
        sibling = schema if path == key else _load_json_file(path)
        if isinstance(sibling, dict) and isinstance(sibling.get("$id"), str):
            resources.append((sibling["$id"], Resource.from_contents(sibling)))
    registry = Registry().with_resources(resources)
    validator = Draft202012Validator(schema, registry=registry)
    _validator_cache[key] = validator
    return validator


def _format_path(path: Iterable[object]) -> str:
    """Formats a JSON path the way chorusd's SchemaError does: parts[0].text."""
    out = ""
    for element in path:
        if isinstance(element, int):
            out += f"[{element}]"
        else:
            out += ("." if out else "") + str(element)
    return out or "(top level)"


def _error_messages(validator: Draft202012Validator, event: object, prefix: str) -> List[str]:
    errors = sorted(validator.iter_errors(event), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    messages = []
    for error in errors:
        message = error.message
        path = list(error.absolute_path)
        # {"not": {"required": ["parts"]}}: a field this type of event or message may not have.
        forbidden = error.validator_value.get("required") if error.validator == "not" and isinstance(error.validator_value, dict) else None
        if isinstance(forbidden, list) and len(forbidden) == 1:
            path.append(forbidden[0])
            message = f'"{forbidden[0]}" is not allowed here'
        # anyOf/oneOf failures: name the closest branch's reason too.
        if error.context:
            best = jsonschema.exceptions.best_match(error.context)
            if best is not None and best.message != message:
                message += f" ({_format_path(best.absolute_path)}: {best.message})"
        messages.append(f"{prefix}: {_format_path(path)}: {message}")
    return messages


def _extract_event(value: object) -> Tuple[Optional[object], Optional[str]]:
    """Returns (event, None) or (None, reason) for one parsed line."""
    if isinstance(value, dict) and value.get("type") == "event" and "event" in value:
        return value["event"], None
    if isinstance(value, dict) and value.get("type") == "event":
        return None, 'an "event" frame without "event"'
    return value, None


def _validate(validator: Draft202012Validator, lines: Iterable[str], label: str) -> Tuple[int, List[str]]:
    count = 0
    errors: List[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        prefix = f"{label}{number}"
        try:
            value = _parse_strict(text)
        except (ValueError, _StrictJSONError) as exc:
            errors.append(f"{prefix}: not valid JSON: {exc}")
            continue
        event, problem = _extract_event(value)
        if problem is not None:
            errors.append(f"{prefix}: {problem}")
            continue
        count += 1
        errors.extend(_error_messages(validator, event, prefix))
    return count, errors


def validate_lines(schema_path: str, lines: Iterable[str]) -> List[str]:
    """Validates NDJSON lines against the schema at schema_path.

    Returns the errors as "line N: PATH: MESSAGE" strings; an empty list means
    every line is valid. Raises SchemaLoadError when the schema itself is unusable.
    """
    validator = load_validator(schema_path)
    _, errors = _validate(validator, lines, "line ")
    return errors


def main(argv: List[str]) -> int:
    if len(argv) >= 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) < 3:
        sys.stderr.write("usage: validate_events.py SCHEMA FILE...\n")
        return 2
    try:
        validator = load_validator(argv[1])
    except SchemaLoadError as exc:
        sys.stderr.write(f"validate_events.py: {exc}\n")
        return 2
    total = 0
    all_errors: List[str] = []
    for path in argv[2:]:
        try:
            if path == "-":
                count, errors = _validate(validator, sys.stdin, "<stdin>:")
            else:
                with open(path, "r", encoding="utf-8", errors="strict") as f:
                    count, errors = _validate(validator, f, f"{path}:")
        except OSError as exc:
            all_errors.append(f"{path}: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError as exc:
            all_errors.append(f"{path}: not UTF-8: {exc}")
            continue
        total += count
        all_errors.extend(errors)
    if all_errors:
        for message in all_errors:
            print(message)
        sys.stdout.flush()
        print(f"{len(all_errors)} error{'s' if len(all_errors) != 1 else ''} in {total} event{'s' if total != 1 else ''}",
              file=sys.stderr)
        return 1
    print(f"{total} events valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
