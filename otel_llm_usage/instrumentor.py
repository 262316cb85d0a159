"""`LLMUsageInstrumentor` and the module-level `instrument()` / `uninstrument()`."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Collection, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from . import _fork, active, coexist, console, content, registry
from ._guard import report
from ._supported import supported
from .config import ENV_PROMETHEUS_PORT, Options
from .options_change import PATCHING, changed_options, describe
from .pricing import Pricer
from .recorder import Recorder
from .rollup import Rollup
from .rollup import install as install_rollup
from .rollup import uninstall as uninstall_rollup

log = logging.getLogger(__name__)


class LLMUsageInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches every installed LLM client library; usable from `opentelemetry-instrument`."""

    # BaseInstrumentor is a singleton whose __init__ runs on every instantiation, so state is
    # set in _instrument rather than in __init__.
    recorder: Recorder | None = None
    options: Options | None = None
    rollup: Rollup | None = None
    # (owner, method, original, our wrapper) of every method patched
    _patched: tuple[tuple[Any, str, Any, Any], ...] = ()
    _generation = 0
    # The options given in code so far, kept across `instrument()` calls: one that names fewer
    # options changes only those it names.
    _given: Mapping[str, Any] = MappingProxyType({})
    _tracer_provider: Any = None
    _meter_provider: Any = None  # as given (None: the global one, or Prometheus')
    _meters: Any = None  # the one in use
    _logger_provider: Any = None
    _console: console.ConsoleListener | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        # Every client library is optional and checked on its own when patched (_supported.py
        # says why neither the required list nor `instruments-any` fits).
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.pop("tracer_provider", None)
        meter_provider = kwargs.pop("meter_provider", None)
        logger_provider = kwargs.pop("logger_provider", None)  # for the content events
        # Bad keyword values raise here (the caller's own code); bad environment values have
        # already been warned about and replaced by defaults.
        given = {name: value for name, value in kwargs.items() if value is not None}
        options = Options.resolve(given)
        self.options = options
        self._given = given
        self._tracer_provider, self._meter_provider = tracer_provider, meter_provider
        self._logger_provider = logger_provider
        content.use_logger_provider(logger_provider)
        if options.prometheus_port is not None and meter_provider is None:
            meter_provider = _prometheus(options) or meter_provider
        self._meters = meter_provider
        try:
            self._start(options, tracer_provider, meter_provider)
        except Exception as exc:  # from `opentelemetry-instrument` too: never stop the application
            report("instrument", exc)

    def _start(self, options: Options, tracer_provider: Any, meter_provider: Any) -> None:
        recorder = Recorder(tracer_provider, meter_provider, Pricer(options.prices), options)
        self.recorder = recorder
        if options.rollups:
            self.rollup = install_rollup(recorder, options, tracer_provider, meter_provider)
        active.install(active.Installation(recorder, self.rollup))
        coexist.watch(options.coexist)
        if options.console:
            self._console = console.enable()
            recorder.add_listener(self._console)
        self._patched = ()
        self._patch_all(options)

    def _patch_all(self, options: Options) -> None:
        """Patch each wanted library now if imported, else when the application imports it."""
        self._generation += 1
        for module_name in registry.selected(options.providers, options.frameworks).values():
            provider = importlib.import_module(module_name)
            library = provider.LIBRARY
            if library in sys.modules:
                self._patch(provider, self._generation)
            elif _installed(library):
                # Patch when the application imports the library: instrument() itself never pays
                # for importing a client library the application may not use (litellm takes seconds).
                wrapt.register_post_import_hook(partial(self._on_import, provider, self._generation), library)

    def _on_import(self, provider: Any, generation: int, _module: Any) -> None:
        try:
            if generation == self._generation and self.is_instrumented_by_opentelemetry:
                self._patch(provider, generation)
        except Exception as exc:
            report(f"instrument {provider.LIBRARY} on import", exc)

    def _patch(self, provider: Any, generation: int) -> None:
        assert self.recorder is not None and self.options is not None
        if not supported(provider.LIBRARY):
            return
        patched = list(self._patched)
        for (module_name, attr), wrapper in provider.build_wrappers(self.recorder, self.options).items():
            module = importlib.import_module(module_name)
            owner_name, method = attr.rsplit(".", 1)
            owner = getattr(module, owner_name)
            original = owner.__dict__.get(method)
            if original is None:  # a release that renamed or removed the method: skip it, keep the rest
                report(f"instrument {module_name}.{attr} (not found)", LookupError(attr))
                continue
            wrapt.wrap_function_wrapper(owner, method, wrapper)
            patched.append((owner, method, original, owner.__dict__.get(method)))
            try:
                coexist.warn_bypass(owner, method, original, owner.__dict__.get(method))
            except Exception as exc:
                report("coexist.bypass", exc)
        self._patched = tuple(patched)
        try:
            coexist.check(provider.LIBRARY, self.options.coexist)
        except Exception as exc:
            report("coexist.check", exc)

    def reconfigure(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        kwargs: dict[str, Any],
    ) -> None:
        """`instrument()` while instrumented: apply the options that differ from the next call on,
        keeping the recorder, the rollup's ledgers and the counters. Bad keyword values raise
        before anything changes."""
        logger_provider = kwargs.pop("logger_provider", None)
        given = {**self._given, **{name: value for name, value in kwargs.items() if value is not None}}
        new = Options.resolve(given)
        old, recorder = self.options, self.recorder
        assert old is not None and recorder is not None
        self._given = given
        for what, value, held in (
            ("tracer_provider", tracer_provider, self._tracer_provider),
            ("meter_provider", meter_provider, self._meter_provider),
        ):
            if value is not None and value is not held:
                log.warning(
                    "otel-llm-usage: instrument(%s=...) ignored: already instrumented; "
                    "call uninstrument() first to use another provider",
                    what,
                )
        changed = changed_options(old, new)
        if logger_provider is not None and logger_provider is not self._logger_provider:
            self._logger_provider = logger_provider
            content.use_logger_provider(logger_provider)  # read per event: takes effect at once
            changed.append("logger_provider")
        if not changed:
            return
        self.options = new
        try:
            self._apply(old, new, set(changed), recorder)
        except Exception as exc:
            report("instrument (reconfigure)", exc)
        log.info(
            "otel-llm-usage: reconfigured: %s",
            ", ".join(f"{n}={describe(n, getattr(new, n, logger_provider))}" for n in changed),
        )

    def _apply(self, old: Options, new: Options, changed: set[str], recorder: Recorder) -> None:
        if "prices" in changed:  # the prices file's entries stay; these replace the ones from code
            recorder.pricer.set_overrides(new.prices or {}, replace=True)
        recorder.options = new  # content capture, metric attributes: read on every call
        if "prometheus_port" in changed and new.prometheus_port is not None and self._meter_provider is None:
            provider = _prometheus(new)
            if provider is not None:
                self._meters = provider
                recorder.use_meter_provider(provider)
                if self.rollup is not None:
                    self.rollup.use_meter_provider(provider)
        if "rollups" in changed:
            if new.rollups:
                self.rollup = install_rollup(recorder, new, self._tracer_provider, self._meters)
            elif self.rollup is not None:
                uninstall_rollup(recorder, self.rollup)
                self.rollup = None
            active.install(active.Installation(recorder, self.rollup))
        elif self.rollup is not None:
            self.rollup.reconfigure(new)
        if "console" in changed:
            self._set_console(new.console, recorder)
        if "coexist" in changed:
            coexist.watch(new.coexist)
        if changed & PATCHING:
            self._unpatch()
            self._patch_all(new)

    def _set_console(self, on: bool, recorder: Recorder) -> None:
        if self._console is not None:
            recorder.remove_listener(self._console)
            self._console = None
            console.disable()
        if on:
            self._console = console.enable()
            recorder.add_listener(self._console)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._unpatch()
        active.install(None)
        if self._console is not None:
            self._console = None
            console.disable()
        if self.rollup is not None and self.recorder is not None:
            uninstall_rollup(self.recorder, self.rollup)
        self.rollup = None
        self.recorder = None

    def _unpatch(self) -> None:
        self._generation += 1  # import hooks registered before now do nothing
        for owner, method, original, ours in reversed(self._patched):
            if owner.__dict__.get(method) is ours:
                setattr(owner, method, original)
            else:  # wrapped again since, by another instrumentation: removing ours would drop theirs
                log.warning(
                    "otel-llm-usage: %s.%s was wrapped again after instrument(); left in place",
                    getattr(owner, "__qualname__", owner),
                    method,
                )
        self._patched = ()


def _prometheus(options: Options) -> Any:
    """The Prometheus meter provider, or None; a missing extra raises only when asked for in code."""
    from .exporters import MissingExtraError, prometheus_meter_provider

    assert options.prometheus_port is not None
    try:
        return prometheus_meter_provider(options.prometheus_port)
    except MissingExtraError as exc:
        if "prometheus_port" not in options.from_env:
            raise
        log.warning("otel-llm-usage: %s=%s ignored: %s", ENV_PROMETHEUS_PORT, options.prometheus_port, exc)
        return None


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name ("google.genai") whose parent package is absent
        return False


_lock = _fork.lock()


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    **options: Any,
) -> LLMUsageInstrumentor:
    """Patch every installed LLM client.

    Uses the global tracer, meter and logger providers unless others are given (`logger_provider=`
    receives the content events). Options, each also an environment variable (docs/configuration.md):
    capture_content, max_content_length, stream_usage, providers, frameworks, metric_attributes,
    endpoints, prices, rollups, budgets, budget_callback, max_sessions, session_idle_seconds,
    max_call_records, prometheus_port, anthropic_native_spans, coexist, console. A bad keyword value
    raises ValueError naming it; a bad environment value is one warning naming the variable, then the
    default.

    Called again (or after `opentelemetry-instrument` instrumented with the environment's options),
    it reconfigures in place: the options it names apply from the next call, the others keep their
    values, every total and counter continues, and one INFO line says what changed. With the same
    options, or none, it changes nothing.
    """
    with _lock:
        inst = LLMUsageInstrumentor()  # BaseInstrumentor makes this the one instance
        if not inst.is_instrumented_by_opentelemetry:
            inst.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, **options)
        else:
            inst.reconfigure(tracer_provider, meter_provider, options)
        return inst


def uninstrument() -> None:
    """Restore every patched method exactly. Safe to call when not instrumented."""
    with _lock:
        inst = LLMUsageInstrumentor()
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()


def active_instrumentor() -> LLMUsageInstrumentor | None:
    inst = LLMUsageInstrumentor()
    return inst if inst.is_instrumented_by_opentelemetry else None
