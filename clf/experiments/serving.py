"""`ExperimentSync`: keeps a running `ClassificationService` in step with the experiments in the database.

    framework = ABTestingFramework("postgresql+psycopg://clf@db/clf", registry="models/classification")
    sync = ExperimentSync(framework, service)
    sync.sync()                                                   # once at startup
    app = create_app(service, periodic=[(10.0, sync.sync)], on_shutdown=[sync.close])

Each `sync` looks up the running experiment whose control is the service's live version. A new one gets its
treatment loaded and its traffic rule installed; when it stops or completes, the service goes back to its live
version alone. Every HTTP worker runs its own sync against the same database, and since the split hashes the user
id with SHA-256, a user lands in the same arm whichever worker answers.
"""

from __future__ import annotations

import logging
import threading
from enum import StrEnum
from typing import TYPE_CHECKING

from clf.experiments.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from clf.experiments.framework import ABTestingFramework
    from clf.serving.routing import WeightedSplit
    from clf.serving.service import ClassificationService

log = logging.getLogger(__name__)


class SyncOutcome(StrEnum):
    """What one `ExperimentSync.sync` did."""

    STARTED = "started"
    """A new experiment's treatment was loaded and its traffic rule installed."""
    ENDED = "ended"
    """The installed experiment is no longer running; traffic went back to the live version."""
    UNCHANGED = "unchanged"
    """Nothing to do: the same experiment, or still none."""
    DATABASE_UNAVAILABLE = "database_unavailable"
    """The database could not be asked; the current routing stays as it is until it answers again."""


class ExperimentSync:
    """Installs the running experiment of the service's live version, and removes it when it ends.

    Args:
        framework: the experiments (and the prediction-log buffer).
        service: the service to route; its prediction listener is attached on the first `sync`.
        unload_treatment: free the treatment's model when its experiment ends.
    """

    def __init__(
        self, framework: ABTestingFramework, service: ClassificationService, *, unload_treatment: bool = True
    ) -> None:
        self.framework = framework
        self.service = service
        self.unload_treatment = unload_treatment
        self.experiment_id: int | None = None
        """The experiment whose rule is installed, or None."""
        self._rule: WeightedSplit | None = None
        self._listening = False
        self._yielded = False
        self._lock = threading.Lock()

    def sync(self) -> SyncOutcome:
        """Brings the service's routing in line with the database (safe to call from a periodic job).

        Returns:
            What changed.

        Raises:
            RegistryError: when a new experiment's treatment cannot be found in the registry.
            ModelLoadError: when its files do not load.
        """
        with self._lock:
            if not self._listening:
                self.service.add_prediction_listener(self.framework.log_event)
                self._listening = True
            try:
                running = self.framework.running_experiment_for(self.service.live_version)
            except DatabaseUnavailableError as err:
                log.warning("experiment sync skipped, routing unchanged: %s", err)
                return SyncOutcome.DATABASE_UNAVAILABLE
            if running is not None and running.id == self.experiment_id:
                if self._installed():
                    return SyncOutcome.UNCHANGED
                if not self._plain():
                    # A rollout replaced our rule on purpose; fighting it every few seconds would undo it.
                    if not self._yielded:
                        log.warning(
                            "experiment %d is running but the service routes by %r; leaving that rule in place",
                            running.id,
                            self.service.traffic_rule,
                        )
                        self._yielded = True
                    return SyncOutcome.UNCHANGED
                ended = False  # our rule was cleared (e.g. a swap back to the control): install it again
            else:
                ended = self._end_current()
            if running is None:
                return SyncOutcome.ENDED if ended else SyncOutcome.UNCHANGED
            rule = self.framework.traffic_rule(running.id)
            self.service.load(running.treatment_version)
            self.service.set_traffic_rule(rule)
            self.experiment_id, self._rule, self._yielded = running.id, rule, False
            log.info(
                "experiment %d (%s) routing %.0f%% of users to %s",
                running.id,
                running.name,
                100 * running.traffic_split,
                running.treatment_version,
            )
            return SyncOutcome.STARTED

    def close(self) -> None:
        """Stops logging predictions and writes the buffered logs (an ``on_shutdown`` hook of the HTTP app)."""
        with self._lock:
            if self._listening:
                self.service.remove_prediction_listener(self.framework.log_event)
                self._listening = False
        self.framework.close()

    def _installed(self) -> bool:
        """Whether our rule is still the service's (a swap or a rollout may have replaced it)."""
        return self._rule is not None and self.service.traffic_rule == self._rule

    def _plain(self) -> bool:
        """Whether the service sends everything to its live version (no split installed)."""
        return self.service.traffic_rule.versions == frozenset({self.service.live_version})

    def _end_current(self) -> bool:
        """Removes the installed experiment's rule, if it is still in place; returns whether one was installed."""
        if self.experiment_id is None or self._rule is None:
            return False
        rule, self.experiment_id, self._rule = self._rule, None, None
        if self.service.traffic_rule == rule:
            self.service.set_traffic_rule(None)
        log.info("experiment %s ended: all traffic to %s", rule.experiment, self.service.live_version)
        if self.unload_treatment and rule.treatment != self.service.live_version:
            try:
                self.service.unload(rule.treatment)
            except ValueError as err:  # another rule (a canary, a new experiment) still sends it traffic
                log.info("kept %s loaded: %s", rule.treatment, err)
        return True
