"""Find, load and check gankit plugins registered under the ``gankit.plugins`` entry-point group.

Light tier: standard library plus `gankit.plugin_api`. Listing reads installed
distributions' metadata only and imports no plugin; `load_plugin` imports exactly the
one plugin asked for. A plugin that fails to import (even by calling ``sys.exit()`` or
raising another `BaseException` there), speaks a plugin API version this gankit does not,
breaks the contract in any field (`gankit.plugin_api.validate_plugin` checks them all) or
claims a built-in name from another distribution raises `PluginError` naming its
distribution and version, so a single broken plugin never stops the others (or
`gankit plugins`) from working.

    list_plugins()      -> [PluginInfo]                 # metadata only, no imports
    load_plugin(name)   -> GanPlugin                    # imports and validates one plugin
    survey_plugins()    -> [PluginStatus]               # imports all; info, plugin or error
    info_of(name)       -> PluginInfo | None            # the registration load_plugin(name) uses
    origin_of(name)     -> str                          # how messages name an installed plugin
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
import re
from dataclasses import dataclass, replace
from typing import Optional

from gankit.errors import PluginError, UsageError
from gankit.plugin_api import BUILTIN_PLUGINS, GanPlugin, validate_plugin

ENTRY_POINT_GROUP = "gankit.plugins"
# The distribution whose entry points may use the names in BUILTIN_PLUGINS.
BUILTIN_DISTRIBUTION = "gankit"
# Longest exception text quoted from a plugin's failed import.
MAX_REASON = 400

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginStatus",
    "list_plugins",
    "load_plugin",
    "info_of",
    "origin_of",
    "survey_plugins",
]


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin, as the installed metadata describes it.

    Attributes:
        name: the entry-point name, which is what ``--plugin NAME`` selects.
        value: the entry point's target, ``"module:attr"``.
        distribution: the distribution (pip package) that registers it.
        version: that distribution's version.
        description: the plugin's one-line description; None until the plugin has been
            loaded (reading it means importing the plugin, which listing never does).
    """

    name: str
    value: str
    distribution: str
    version: str
    description: Optional[str] = None

    @property
    def origin(self) -> str:
        """How messages name this plugin: ``plugin 'x' from dist 1.0 (module:attr)``."""
        return f"plugin {self.name!r} from {self.distribution} {self.version} ({self.value})"


@dataclass(frozen=True)
class PluginStatus:
    """The outcome of loading one registered plugin: exactly one of plugin and error is set."""

    info: PluginInfo
    plugin: Optional[GanPlugin] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _normalize(dist_name: str) -> str:
    # PEP 503 normalisation, so 'Gankit_Hinge' and 'gankit-hinge' count as one distribution.
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _entries() -> list[tuple[PluginInfo, metadata.EntryPoint]]:
    """Every registered entry point in the group, in name order, exact duplicates removed."""
    seen: set[tuple[str, str, str]] = set()
    found: list[tuple[PluginInfo, metadata.EntryPoint]] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = (dist.name if dist is not None else None) or "<unknown distribution>"
        version = (dist.version if dist is not None else None) or "?"
        # One distribution can be visible twice (an editable install next to a stale
        # egg-info, or the same site dir on sys.path twice). The same name pointing at
        # the same target from the same distribution is one plugin, not a clash; the
        # first copy is the one Python would import, so it wins.
        key = (ep.name, ep.value, _normalize(dist_name))
        if key in seen:
            continue
        seen.add(key)
        found.append((PluginInfo(ep.name, ep.value, dist_name, version), ep))
    found.sort(key=lambda pair: (pair[0].name, _normalize(pair[0].distribution)))
    return found


def list_plugins() -> list[PluginInfo]:
    """All registered plugins, sorted by name. Reads metadata only; imports no plugin.

    A name registered by two distributions appears twice here (so a listing can show
    both); loading it is refused until one is uninstalled.
    """
    return [info for info, _ in _entries()]


def _reserved_by_gankit(info: PluginInfo) -> bool:
    """A built-in name registered by some other distribution: refused, the built-in is kept."""
    return info.name in BUILTIN_PLUGINS and _normalize(info.distribution) != BUILTIN_DISTRIBUTION


def _reserved_message(info: PluginInfo) -> str:
    return (f"{info.origin}: the name {info.name!r} is reserved for gankit's built-in plugin, so this one is "
            "not loaded (the built-in is used); give it another name in the distribution's "
            "[project.entry-points.\"gankit.plugins\"] table")


def _installed_names(entries: list[tuple[PluginInfo, metadata.EntryPoint]]) -> list[str]:
    return sorted({info.name for info, _ in entries})


def _duplicate_message(name: str, infos: list[PluginInfo]) -> str:
    owners = " and ".join(f"{i.distribution} {i.version} ({i.value})" for i in infos)
    return (
        f"plugin name {name!r} is registered by more than one distribution: {owners}. "
        "gankit will not guess which one you mean; uninstall or rename one of them."
    )


def _reason(exc: BaseException) -> str:
    """An exception from a plugin's import as one bounded line."""
    try:
        text = " ".join(str(exc).split())
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = ""
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON] + "..."
    if isinstance(exc, SystemExit):
        return f"SystemExit: the module called sys.exit({text}) while being imported"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_entry(info: PluginInfo, ep: metadata.EntryPoint) -> GanPlugin:
    """Import one entry point and check it against the contract; PluginError on any failure."""
    if _reserved_by_gankit(info):
        raise PluginError(_reserved_message(info))
    try:
        obj = ep.load()
    except KeyboardInterrupt:  # the user's Ctrl-C, not the plugin's doing
        raise
    except BaseException as exc:  # noqa: BLE001 - sys.exit() and friends in third-party code are the plugin's
        raise PluginError(f"{info.origin} failed to import: {_reason(exc)}") from None
    try:
        plugin = validate_plugin(obj, info.origin)
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    if plugin.name != info.name:
        # Exported models record plugin.name; it must lead back to this entry point.
        raise PluginError(
            f"{info.origin}: the entry point is named {info.name!r} but the plugin calls itself "
            f"{plugin.name!r}; the two must match"
        )
    return plugin


def load_plugin(name: str) -> GanPlugin:
    """Import and validate the plugin registered as ``name``; no other plugin is imported.

    Raises:
        UsageError: no plugin has that name (the message lists the installed ones).
        PluginError: the name is registered twice, or the plugin fails to import or
            breaks the contract (the message names its distribution and version).
    """
    entries = _entries()
    matches = [(info, ep) for info, ep in entries if info.name == name]
    if any(not _reserved_by_gankit(info) for info, _ in matches):
        matches = [(info, ep) for info, ep in matches if not _reserved_by_gankit(info)]
    if not matches:
        installed = _installed_names(entries)
        if not installed:
            raise UsageError(
                f"unknown plugin {name!r}: no gankit plugins are installed "
                "(the built-ins come with gankit; is it installed properly?)"
            )
        close = difflib.get_close_matches(name, installed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"unknown plugin {name!r}; installed plugins: {', '.join(installed)}.{hint}"
        )
    if len(matches) > 1:
        raise PluginError(_duplicate_message(name, [info for info, _ in matches]))
    info, ep = matches[0]
    return _load_entry(info, ep)


def survey_plugins() -> list[PluginStatus]:
    """Load every registered plugin, for listings: each one's info (with its description
    once loaded) and either the plugin or why it could not be loaded. Never raises for a
    broken plugin. Imports every plugin, so only `gankit plugins` should call it."""
    entries = _entries()
    counts: dict[str, list[PluginInfo]] = {}
    for info, _ in entries:
        if not _reserved_by_gankit(info):
            counts.setdefault(info.name, []).append(info)
    statuses: list[PluginStatus] = []
    for info, ep in entries:
        if len(counts.get(info.name, ())) > 1 and not _reserved_by_gankit(info):
            statuses.append(PluginStatus(info, error=_duplicate_message(info.name, counts[info.name])))
            continue
        try:
            plugin = _load_entry(info, ep)
        except PluginError as exc:
            statuses.append(PluginStatus(info, error=str(exc)))
        else:
            statuses.append(PluginStatus(replace(info, description=plugin.description), plugin=plugin))
    return statuses


def info_of(name: str) -> Optional[PluginInfo]:
    """The registration `load_plugin(name)` would use (a built-in name's impostors skipped), or None."""
    matches = [info for info, _ in _entries() if info.name == name]
    return next((i for i in matches if not _reserved_by_gankit(i)), matches[0] if matches else None)


def origin_of(name: str) -> str:
    """How messages name the installed plugin ``name`` (distribution, version, entry point);
    just ``plugin 'name'`` for a plugin object no distribution registers (a test's, say)."""
    try:
        info = info_of(name)
    except Exception:  # noqa: BLE001 - naming the plugin must never hide the error being reported
        info = None
    return info.origin if info is not None else f"plugin {name!r}"
