"""Content-Type and Accept parsing as the SageMaker containers do it."""

from __future__ import annotations


def split_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'Text/CSV; label_size=1'`` -> ``('text/csv', {'label_size': '1'})`` (type lower-cased)."""
    parts = value.split(";")
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if key:
            params[key] = val.strip().strip('"') if sep else ""
    return parts[0].strip().lower(), params


def bare_media_type(value: str | None) -> str:
    """The media type without parameters, lower-cased; ``''`` when absent."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def resolve_accept(accept: str | None, default: str) -> str:
    """Accept without parameters; absent or ``*/*`` means ``default``.

    Like the containers, only the first media range is considered: ``Accept: text/csv, */*`` is
    ``text/csv``.
    """
    bare = bare_media_type(accept.split(",", 1)[0] if accept else None)
    if not bare or bare == "*/*":
        return default
    return bare
