"""`set_prices()` and `reload_prices()`: change prices while the process runs.

Every total recorded so far stays as it is (costs already counted are not recomputed); the new
prices apply from the next call. Prices set here last until `uninstrument()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import active
from .pricing import ModelPrice, Pricer, validate_prices


def _pricer(what: str) -> Pricer:
    installation = active.current()
    if installation is None:
        raise RuntimeError(f"{what} needs otel_llm_usage.instrument() to have been called")
    return installation.recorder.pricer


def set_prices(prices: Mapping[str, ModelPrice | Mapping[str, Any]], *, replace: bool = False) -> None:
    """Add or change price overrides, in USD per million tokens, from the next call on.

    `prices` maps a model name or glob (`"acme-*"`) to a `ModelPrice` or a mapping of its fields
    (`{"input": 2.5, "output": 10.0, "cache_read": 1.25}`). With `replace=True` these become the
    only prices given in code (those of `instrument(prices=...)` and earlier calls are dropped);
    the prices file's entries stay either way, and a name given in code wins over the file.
    Bad input raises ValueError naming the model and the field, and changes nothing.
    """
    checked = validate_prices(prices)
    if not isinstance(replace, bool):
        raise ValueError(f"replace must be True or False, not {replace!r}")
    _pricer("set_prices()").set_overrides(checked, replace=replace)


def reload_prices() -> None:
    """Read the prices file (`OTEL_LLM_USAGE_PRICES_FILE`) again; it applies from the next call.

    A file that cannot be read, or a bad entry in it, is one warning: the rest still applies.
    Prices given in code are kept and still win for the same name.
    """
    _pricer("reload_prices()").reload_file()
