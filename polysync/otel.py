"""OpenTelemetry metrics from :mod:`polysync.instrument`: a listener recording to an OTel meter.

Install the extra (``pip install 'polysync-primitives[otel]'``, which brings
``opentelemetry-api``), configure an SDK ``MeterProvider`` as your application does, then::

    import polysync.otel
    listener = polysync.otel.instrument_meter()    # the global MeterProvider
    ...
    polysync.instrument.unsubscribe(listener)      # back to zero cost

The instruments, on the meter ``polysync``, each with the attributes ``polysync.kind``,
``polysync.backend`` and ``polysync.name`` (``""`` for an anonymous object):

==============================  ===========  ================================================
instrument                      type, unit   what
==============================  ===========  ================================================
``polysync.acquire.wait``       histogram s  how long each successful acquire waited
``polysync.hold``               histogram s  how long each hold lasted, acquire to release
``polysync.acquire.timeouts``   counter      blocking acquires that gave up
``polysync.takeovers``          counter      locks (permits) taken over from a dead holder
``polysync.leases.lost``        counter      leases that could not be renewed
==============================  ===========  ================================================

``opentelemetry`` is imported when :class:`OTelListener` is made, never by ``import
polysync``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polysync import instrument
from polysync.instrument import Observation

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["OTelListener", "instrument_meter"]


class OTelListener:
    """A :mod:`polysync.instrument` listener recording every observation to OTel instruments."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            from polysync.errors import BackendUnavailableError

            raise BackendUnavailableError(
                "polysync.otel needs opentelemetry-api: pip install 'polysync-primitives[otel]'"
            ) from exc
        from polysync import __version__

        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("polysync", __version__)
        self._wait = meter.create_histogram(
            "polysync.acquire.wait", unit="s", description="how long an acquire waited"
        )
        self._hold = meter.create_histogram(
            "polysync.hold", unit="s", description="how long a hold lasted"
        )
        self._timeouts = meter.create_counter(
            "polysync.acquire.timeouts", description="blocking acquires that gave up"
        )
        self._takeovers = meter.create_counter(
            "polysync.takeovers", description="takeovers from a holder that died"
        )
        self._lost = meter.create_counter(
            "polysync.leases.lost", description="leases that could not be renewed"
        )

    def __call__(self, observation: Observation) -> None:
        attributes = {
            "polysync.kind": observation.kind,
            "polysync.backend": observation.backend,
            "polysync.name": observation.name or "",
        }
        event, seconds = observation.event, observation.seconds
        if event == instrument.ACQUIRED and seconds is not None:
            self._wait.record(seconds, attributes)
        elif event == instrument.RELEASED and seconds is not None:
            self._hold.record(seconds, attributes)
        elif event == instrument.TIMEOUT:
            self._timeouts.add(1, attributes)
        elif event == instrument.TAKEOVER:
            self._takeovers.add(1, attributes)
        elif event == instrument.LEASE_LOST:
            self._lost.add(1, attributes)


def instrument_meter(meter_provider: MeterProvider | None = None) -> OTelListener:
    """Make an :class:`OTelListener` and subscribe it; unsubscribe it to stop."""
    listener = OTelListener(meter_provider)
    instrument.subscribe(listener)
    return listener
