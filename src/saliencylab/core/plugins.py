"""Plugins installed by other packages: the entry points of one group, loaded once."""

from importlib import metadata

from .errors import UserError


def installed(group: str, kind: str) -> list[tuple[str, object]]:
    """(name, loaded object) of every entry point in `group`; a plugin that fails to import is
    one line naming it (`kind`: what it provides, for that line)."""
    found = []
    for entry in metadata.entry_points(group=group):
        try:
            found.append((entry.name, entry.load()))
        except Exception as e:
            raise UserError(f"the {kind} plugin {entry.name!r} ({entry.value}) failed to load: "
                            f"{type(e).__name__}: {e}") from None
    return found
