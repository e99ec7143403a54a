"""ClassificationService: the registry's models behind one thread-safe ``predict``, with routing and monitoring.

    service = ClassificationService("models/classification")           # the production version
    service.predict([{"title": "...", "abstract": "..."}], user_id="u-17")
    # → [Prediction(label="cs.CL", probability=0.91, top3=(...), version="v1.2.0", arm="live", ...)]
    service.swap("v1.3.0")                                             # hot swap; in-flight requests finish

Several versions can be loaded at once; a traffic rule (`clf.serving.routing`) picks the one that answers each
request, which is how blue-green, canary and A/B experiments share one service. Every answered input is recorded
in the `PredictionMonitor` with the version that answered it, its queue wait and its model latency, and in the
Prometheus counters and histograms of `ServiceMetrics`, as are model loads, swaps and the traffic shares of the
installed rule (the HTTP layer counts each answer there with its arm and status code).

A shadow candidate (`start_shadow`) sees a share of the requests production answered, on its own worker and bounded
queue (`clf.serving.shadow`): its answers are recorded there and never returned, routed, or counted as production's.

Input is validated and cleaned before it is queued (`clf.serving.inputs`), so nothing a client sends can make a
model fail; each version's queue is bounded (a full one sheds with `OverloadedError`); and a paper that makes the
model fail fails alone, not the papers that shared its batch.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clf.inference.prediction import Prediction
from clf.inference.predictor import BASE_VERSION, Backend, Dtype, ModelPredictor
from clf.monitoring.metrics import ServiceMetrics
from clf.monitoring.monitor import PredictionMonitor
from clf.monitoring.shadow import check_share
from clf.registry import ModelRegistry, RegistryError
from clf.serving.batching import BatchAnswer, DynamicBatcher
from clf.serving.config import Batching, RequestLimits
from clf.serving.errors import DeadlineExceededError, ModelLoadError, NoModelError, ServiceClosedError
from clf.serving.inputs import Input, paper_arxiv_ids, paper_texts
from clf.serving.prediction_ids import PredictionIds
from clf.serving.routing import Route, SingleVersion, TrafficRule, stable_bucket, traffic_shares
from clf.serving.shadow import ShadowMirror

log = logging.getLogger(__name__)

WARMUP_TEXT = "Warm-up. A short abstract that loads the weights and the tokenizer before the first real request."


@dataclass(frozen=True)
class PredictionEvent:
    """One answered (or failed) request, as prediction listeners see it.

    Attributes:
        texts: the cleaned model input of each paper.
        records: the returned predictions (with ``prediction_id``, ``version``, ``arm``); empty when `error` is set.
            A paper that failed on its own while others of the request were answered has one with ``error``.
        route: where the request went (version, arm, experiment).
        user_id: the caller's user id, if given.
        latency_ms: time from submission to answer.
        error: None, or what went wrong when every paper of the request failed.
        timestamp: epoch seconds when the answer was ready.
        queue_ms: time the request waited for its batch.
        service_ms: time its batch spent in the model.
        batch_size: texts in that batch.
        arxiv_ids: each paper's arXiv id as the client sent it (None where it sent none); empty when none did.
    """

    texts: list[str]
    records: list[Prediction]
    route: Route
    user_id: str | None
    latency_ms: float
    error: str | None
    timestamp: float
    queue_ms: float | None = None
    service_ms: float | None = None
    batch_size: int | None = None
    arxiv_ids: tuple[str | None, ...] = ()


PredictionListener = Callable[[PredictionEvent], None]


@dataclass
class _Loaded:
    predictor: ModelPredictor
    batcher: DynamicBatcher


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; any other name is returned as given.

    Args:
        device: ``auto`` or a torch device name.

    Returns:
        The device to run on.
    """
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ClassificationService:
    """Serves one or more model versions from a registry, routing each request by a traffic rule.

    Args:
        registry: the registry folder (or a `ModelRegistry`).
        version: the version to serve first; by default the production version.
        base_model: an export folder (``runs/<name>/export``) served as version ``base`` when the registry holds
            no versions at all.
        device: the torch device the models run on; ``auto`` picks CUDA when there is one, else the CPU.
        batching: how requests are gathered into batches and how many may wait (`Batching`; its unset sizes are
            filled in for the device).
        limits: the papers and characters one request may hold (`RequestLimits`).
        monitor: where every prediction is recorded; a new `PredictionMonitor` by default.
        warmup: run one prediction through each version as it loads, so the first request is not slow.
        backend: ``torch``, or ``onnx`` to run every version with onnxruntime on its ``onnx/`` files (int8 when the
            version has it; see ``clf export``).
        prediction_ids: signs the ``prediction_id`` of every answer (`PredictionIds`); a random key of this process
            by default. Replicas that take feedback for one another must share one key.
        metrics: the Prometheus metrics every prediction, load and swap is counted in; new ones by default.
        dtype: the torch backend's weights: float32, bfloat16, or auto (bfloat16 where the hardware runs it
            natively; see `clf.inference.predictor.resolve_dtype`).
        fault_injection: version → share of its papers to fail as model errors (chosen by a hash of the text, so
            the same papers fail every time): fault drills and tests of the gates (``clf serve --inject_errors``).

    Raises:
        NoModelError: when the registry is empty and no base model is given.
        RegistryError: for an unknown version, or versions but none in production and no `version` named.
        ModelLoadError: when the chosen model's files do not load.
    """

    def __init__(
        self,
        registry: str | Path | ModelRegistry = "models/classification",
        version: str | None = None,
        base_model: str | Path | None = None,
        *,
        device: str = "auto",
        batching: Batching = Batching(),
        limits: RequestLimits = RequestLimits(),
        monitor: PredictionMonitor | None = None,
        warmup: bool = True,
        backend: Backend = "torch",
        prediction_ids: PredictionIds | None = None,
        metrics: ServiceMetrics | None = None,
        fault_injection: dict[str, float] | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        device = resolve_device(device)
        self.registry = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
        self.device = device
        self.batching = batching.resolved(on_gpu=device.startswith("cuda"))
        self.limits = limits
        self.monitor = monitor if monitor is not None else PredictionMonitor()
        self.metrics = metrics if metrics is not None else ServiceMetrics()
        self.fault_injection = dict(fault_injection or {})
        self.dtype = dtype
        self.warmup = warmup
        self.backend = backend
        self.prediction_ids = prediction_ids or PredictionIds(secrets.token_bytes(32))
        self._lock = threading.RLock()
        self._loaded: dict[str, _Loaded] = {}
        self._listeners: list[PredictionListener] = []
        self._shadow: ShadowMirror | None = None
        first = self._first_predictor(version, base_model)
        self._add(first)
        self._live = first.version
        self._rule: TrafficRule = SingleVersion(first.version)
        self.metrics.went_live(first.version)
        self.metrics.traffic(traffic_shares(self._rule))
        log.info("serving %s from %s (%s backend, %s)", first.version, first.model_dir, first.backend, first.dtype)

    # ------------------------------------------------------------------------------------------------ versions

    @property
    def live_version(self) -> str:
        """The version that answers when no other rule is installed (production, or blue in blue-green)."""
        return self._live

    @property
    def loaded_versions(self) -> list[str]:
        """Every version loaded in memory."""
        with self._lock:
            return sorted(self._loaded)

    @property
    def traffic_rule(self) -> TrafficRule:
        """The rule routing requests now."""
        return self._rule

    def predictor(self, version: str | None = None) -> ModelPredictor:
        """The loaded predictor of `version` (the live one by default).

        Args:
            version: a loaded version; None for the live one.

        Returns:
            Its predictor.

        Raises:
            KeyError: when that version is not loaded.
        """
        with self._lock:
            return self._loaded[version or self._live].predictor

    def load(self, version: str, predictor: ModelPredictor | None = None) -> ModelPredictor:
        """Loads `version` from the registry (and warms it up) beside the versions already loaded.

        Loading happens outside the service lock: requests keep flowing meanwhile.

        Args:
            version: a registered version (or ``production``).
            predictor: an already-built predictor to use instead of loading from the registry (custom backends).

        Returns:
            The loaded predictor (the existing one when `version` is already loaded).

        Raises:
            RegistryError: for an unknown version.
            ModelLoadError: when its files do not load.
        """
        with self._lock:
            if version in self._loaded:
                return self._loaded[version].predictor
        if predictor is None:
            predictor = ModelPredictor.from_registry(self.registry, version, self.device, self.backend, self.dtype)
        added = self._add(predictor)
        if added is predictor:
            log.info("loaded %s from %s", predictor.version, predictor.model_dir)
        return added

    def swap(self, version: str) -> str:
        """Makes `version` the live version for all traffic, atomically; the old one stays loaded.

        Requests already queued on the old version are answered by it; every request routed after the swap goes
        to `version`. Call `unload` on the old version once it is no longer needed.

        Args:
            version: the version to make live; loaded from the registry first when it is not loaded.

        Returns:
            The previously live version.
        """
        self.load(version)
        with self._lock:
            previous, self._live = self._live, version
            self._rule = SingleVersion(version)
        self.metrics.went_live(version)
        self.metrics.traffic({version: 1.0})
        log.info("live version: %s (was %s)", version, previous)
        return previous

    def set_traffic_rule(self, rule: TrafficRule | None) -> None:
        """Installs `rule` (None: everything to the live version).

        Args:
            rule: the traffic rule (`SingleVersion`, `WeightedSplit`), or None.

        Raises:
            ValueError: when the rule can pick a version that is not loaded.
        """
        with self._lock:
            rule = rule if rule is not None else SingleVersion(self._live)
            missing = sorted(set(rule.versions) - set(self._loaded))
            if missing:
                raise ValueError(f"traffic rule names versions that are not loaded: {missing}; load them first")
            self._rule = rule
        self.metrics.traffic(traffic_shares(rule))
        log.info("traffic rule: %r", rule)

    def unload(self, version: str) -> None:
        """Frees `version` after answering what is queued on it.

        Args:
            version: a loaded version that is neither live nor in the traffic rule.

        Raises:
            ValueError: when it is live or the traffic rule can still pick it.
        """
        with self._lock:
            if version == self._live or version in self._rule.versions:
                raise ValueError(f"{version} still receives traffic; swap or change the traffic rule first")
            loaded = self._loaded.pop(version, None)
        if loaded is not None:
            loaded.batcher.close()
            self.metrics.unloaded(version)
            log.info("unloaded %s", version)

    def close(self) -> None:
        """Answers what is queued, then stops every version's worker (and the shadow's)."""
        self.stop_shadow()
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for item in loaded:
            item.batcher.close()

    # ---------------------------------------------------------------------------------------------- shadowing

    @property
    def shadow(self) -> ShadowMirror | None:
        """The shadow candidate's mirror, or None when no shadow runs."""
        return self._shadow

    def start_shadow(self, version: str, share: float, max_queue: int | None = None) -> ShadowMirror:
        """Mirrors `share` of the requests production answers to `version`, off the response path.

        The candidate is loaded (and warmed up) outside the service lock, on a worker and queue of its own; it is
        never routed to and never answers a user. A shadow of the same version already running keeps its numbers
        (its share is set to `share`); one of another version is stopped first.

        Args:
            version: a registered version (not the live one).
            share: the share of requests mirrored, in (0, 1].
            max_queue: most papers waiting for the candidate (default: one batch, so that it sheds before production).

        Returns:
            The mirror.

        Raises:
            ValueError: for the live version or a share outside (0, 1].
            RegistryError: for an unknown version.
            ModelLoadError: when its files do not load.
        """
        if version == self._live:
            raise ValueError(f"{version} is the live version; shadow another version")
        current = self._shadow
        if current is not None and current.version == version:
            current.share = check_share(share)
            return current
        predictor = ModelPredictor.from_registry(self.registry, version, self.device, self.backend, self.dtype)
        self._warm_up(predictor)
        batching = self.batching
        assert batching.max_batch_size is not None
        mirror = ShadowMirror(
            self._forward(predictor),
            version,
            share,
            max_queue=max_queue or batching.max_batch_size,
            max_batch_size=batching.max_batch_size,
            metrics=self.metrics,
            busy=self._production_busy,
        )
        with self._lock:
            previous, self._shadow = self._shadow, mirror
        if previous is not None:
            previous.close()
        log.info("shadowing %s with %.0f %% of the requests production answers", version, share * 100)
        return mirror

    def stop_shadow(self) -> None:
        """Stops the shadow candidate, if any, after what is queued for it."""
        with self._lock:
            mirror, self._shadow = self._shadow, None
        if mirror is not None:
            mirror.close()
            log.info("stopped shadowing %s", mirror.version)

    def _production_busy(self) -> bool:
        """Whether more than one batch waits for the live version: the shadow sheds before production does."""
        loaded = self._loaded.get(self._live)
        return loaded is not None and loaded.batcher.queued > loaded.batcher.max_batch_size

    def batch_stats(self) -> dict[str, dict[str, Any]]:
        """Per loaded version: forward passes run, texts classified, mean texts per pass, and the batching mode.

        Returns:
            Version → ``{"batching", "batches_run", "texts_run", "mean_batch_size", "queued", "max_queue",
            "dropped"}`` (``queued``: papers waiting now; ``dropped``: requests taken off the queue unrun, cancelled
            or past their deadline).
        """
        with self._lock:
            loaded = dict(self._loaded)
        stats = {}
        for version, item in sorted(loaded.items()):
            batcher = item.batcher
            mean = batcher.texts_run / batcher.batches_run if batcher.batches_run else None
            stats[version] = {
                "batching": batcher.batching,
                "batches_run": batcher.batches_run,
                "texts_run": batcher.texts_run,
                "mean_batch_size": mean,
                "queued": batcher.queued,
                "max_queue": batcher.max_queue,
                "dropped": batcher.dropped,
            }
        return stats

    def add_prediction_listener(self, listener: PredictionListener) -> None:
        """Calls `listener` with a `PredictionEvent` after every request (A/B logs, rollout gates).

        Listeners run on the model's worker thread after the caller has its answer: keep them quick (buffer, do not
        write to a database inline). An exception in one is logged and does not reach the caller.

        Args:
            listener: a function taking one `PredictionEvent`.
        """
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def remove_prediction_listener(self, listener: PredictionListener) -> None:
        """Stops calling `listener` (no error when it was not added).

        Args:
            listener: a listener given to `add_prediction_listener`.
        """
        with self._lock:
            self._listeners = [item for item in self._listeners if item is not listener]

    # ---------------------------------------------------------------------------------------------- predicting

    def predict(
        self, inputs: Input | Sequence[Input], user_id: str | None = None, timeout: float | None = 60.0
    ) -> list[Prediction]:
        """Classifies papers; blocks until they are answered.

        Args:
            inputs: a paper (``{"title", "abstract"}`` or ``{"text"}``), a plain text, or a list of them.
            user_id: routes the request through the traffic rule (sticky per user in a split).
            timeout: seconds to wait for the answer; a request not started by then is dropped from the queue.

        Returns:
            One `Prediction` per paper: ``label``, ``probability``, ``top3``, ``version``, ``arm``, a signed
            ``prediction_id`` (for feedback on it later), and ``experiment_id`` when an experiment routed it. A paper
            that failed on its own (while others were answered) has ``error`` and a None ``label``.

        Raises:
            InvalidInputError: for an empty, oversized or malformed paper (nothing is run).
            OverloadedError: when the routed version's queue is full (nothing is queued).
            DeadlineExceededError: when no answer came within `timeout`.
            Exception: what the model raised, when every paper of the request failed.
        """
        future = self.submit(inputs, user_id, timeout_s=timeout)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise DeadlineExceededError(timeout or 0.0) from None

    def submit(
        self, inputs: Input | Sequence[Input], user_id: str | None = None, timeout_s: float | None = None
    ) -> Future[list[Prediction]]:
        """Like `predict`, but returns at once with a future (what the async HTTP app awaits).

        Cancelling the future drops the request from its version's queue if its batch has not started.

        Args:
            inputs: a paper, a plain text, or a list of them (see `predict`).
            user_id: routes the request through the traffic rule.
            timeout_s: the request's deadline from now: a request whose batch has not started by then is never run
                and its future fails with `DeadlineExceededError`. None: no deadline.

        Returns:
            A future of the predictions `predict` returns.

        Raises:
            InvalidInputError: for an empty, oversized or malformed paper.
            OverloadedError: when the routed version's queue is full.
            ServiceClosedError: after `close`.
        """
        texts = self.texts_of(inputs)
        arxiv_ids = paper_arxiv_ids(inputs)
        started = time.perf_counter()
        with self._lock:
            # Routing and queueing under one lock: a swap or unload can never strand a routed request.
            route = self._rule.route(user_id)
            loaded = self._loaded.get(route.version)
            if loaded is None:  # only after `close`: rules name loaded versions, unload refuses a routed one
                raise ServiceClosedError("the service is shutting down; retry (another replica answers)")
            inner = loaded.batcher.submit(texts, timeout_s)
        outer: Future[list[Prediction]] = Future()
        outer.add_done_callback(lambda done: inner.cancel() if done.cancelled() else None)
        inner.add_done_callback(functools.partial(self._finish, outer, texts, arxiv_ids, route, user_id, started))
        return outer

    def texts_of(self, inputs: Input | Sequence[Input]) -> list[str]:
        """The cleaned model input of each paper, validated (see `clf.serving.inputs.paper_texts`).

        Args:
            inputs: a paper, a plain text, or a list of them (see `predict`).

        Returns:
            One model input text per paper.

        Raises:
            InvalidInputError: naming the paper and what is wrong with it.
        """
        return paper_texts(inputs, max_inputs=self.limits.max_inputs, max_text_chars=self.limits.max_text_chars)

    def _finish(
        self,
        outer: Future[list[Prediction]],
        texts: list[str],
        arxiv_ids: tuple[str | None, ...],
        route: Route,
        user_id: str | None,
        started: float,
        inner: Future[BatchAnswer],
    ) -> None:
        if inner.cancelled():  # the caller gave up before the batch started: nothing ran, nothing to record
            return
        latency_ms = (time.perf_counter() - started) * 1000
        error = inner.exception()
        if error is not None:  # a deadline passed in the queue, or the worker failed outside the model
            if isinstance(error, DeadlineExceededError):
                _resolve(outer, error=error)
                return
            message = f"{type(error).__name__}: {error}"
            event = PredictionEvent(texts, [], route, user_id, latency_ms, message, time.time())
            self._record(event)
            _resolve(outer, error=error)
            self._notify(event)
            return
        answer = inner.result()
        tag = functools.partial(replace, version=route.version, arm=route.arm, experiment_id=route.experiment)
        records = []
        failures = [result for result in answer.results if isinstance(result, Exception)]
        for result, arxiv_id in zip(answer.results, arxiv_ids, strict=True):
            if isinstance(result, Exception):
                records.append(tag(Prediction(None, None, (), error=_describe(result), arxiv_id=arxiv_id)))
            else:
                issued = self.prediction_ids.issue(route.version, route.arm)
                records.append(tag(result, prediction_id=issued, arxiv_id=arxiv_id))
        ids = arxiv_ids if any(arxiv_ids) else ()
        event_of = functools.partial(
            PredictionEvent,
            queue_ms=answer.queue_ms,
            service_ms=answer.service_ms,
            batch_size=answer.batch_size,
            arxiv_ids=ids,
        )
        if len(failures) == len(records):
            event = event_of(texts, [], route, user_id, latency_ms, _describe(failures[0]), time.time())
            self._record(event)
            _resolve(outer, error=failures[0])
        else:
            event = event_of(texts, records, route, user_id, latency_ms, None, time.time())
            self._record(event)
            _resolve(outer, result=records)
            self._mirror(event)
        self._notify(event)

    def _mirror(self, event: PredictionEvent) -> None:
        """Offers production's answered request to the shadow candidate, after the caller has its answer."""
        mirror = self._shadow
        if mirror is None or event.route.version != self._live or event.route.version == mirror.version:
            return
        try:
            mirror.offer(event)
        except Exception:  # the shadow must never reach a user's request
            log.exception("could not mirror a request to shadow %s", mirror.version)

    def _record(self, event: PredictionEvent) -> None:
        """Records `event` in the monitor before its caller is answered, so that a client which reads /metrics after
        its answer finds its prediction counted; a fault here never reaches the caller."""
        try:
            for index, text in enumerate(event.texts):
                error = event.error if event.error is not None else event.records[index].error
                self.monitor.log_prediction(
                    input_length=len(text),
                    predictions=None if error else event.records[index].to_json()["top3"],
                    latency_ms=event.latency_ms,
                    version=event.route.version,
                    error=error,
                    queue_ms=event.queue_ms,
                    service_ms=event.service_ms,
                    batch_size=event.batch_size,
                )
        except Exception:  # a monitoring fault must not hide the answer
            log.exception("could not record predictions in the monitor")
        try:
            confidences = [record.probability for record in event.records] or [None] * len(event.texts)
            unsure = sum(1 for record in event.records if record.unsure is True)
            self.metrics.observe(
                event.route.version,
                event.latency_ms,
                confidences,
                service_ms=event.service_ms,
                batch_size=event.batch_size,
                unsure=unsure,
            )
        except Exception:
            log.exception("could not record predictions in the metrics")

    def _notify(self, event: PredictionEvent) -> None:
        """Hands `event` to every listener (the prediction log, A/B outcomes) after the caller has its answer."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("prediction listener %r failed", listener)

    # -------------------------------------------------------------------------------------------------- loading

    def _first_predictor(self, version: str | None, base_model: str | Path | None) -> ModelPredictor:
        if version is not None:
            return ModelPredictor.from_registry(self.registry, version, self.device, self.backend, self.dtype)
        if self.registry.production_version() is not None:
            return ModelPredictor.from_registry(self.registry, "production", self.device, self.backend, self.dtype)
        registered = [entry.version for entry in self.registry.list_versions()]
        if registered:
            raise RegistryError(
                f"{self.registry.base_dir} holds {', '.join(registered)} but none is in production; "
                "promote one (clf registry promote vX.Y.Z) or name one with --service.version"
            )
        if base_model is None:
            raise NoModelError(
                f"{self.registry.base_dir} holds no model versions. Register one (clf registry create --model-path "
                "runs/quickstart/export) or serve an export directly with --service.base_model runs/quickstart/export"
            )
        log.warning("registry %s is empty: serving the base model %s", self.registry.base_dir, base_model)
        return ModelPredictor(base_model, BASE_VERSION, self.device, self.backend, dtype=self.dtype)

    def _add(self, predictor: ModelPredictor) -> ModelPredictor:
        """Warms `predictor` up and starts its worker; the version already loaded wins a race between two loads."""
        with self._lock:
            if predictor.version in self._loaded:
                return self._loaded[predictor.version].predictor
        self._warm_up(predictor)
        batching = self.batching
        assert batching.max_batch_size is not None  # resolved in __init__
        batcher = DynamicBatcher(
            self._forward(predictor),
            max_batch_size=batching.max_batch_size,
            max_wait_ms=batching.max_wait_ms,
            batching=batching.enabled,
            max_queue=batching.max_queue,
            name=predictor.version,
        )
        with self._lock:
            existing = self._loaded.get(predictor.version)
            if existing is None:
                self._loaded[predictor.version] = _Loaded(predictor, batcher)
        if existing is not None:
            batcher.close()
            return existing.predictor
        self.metrics.loaded(predictor.version, batching.max_batch_size)
        return predictor

    def _warm_up(self, predictor: ModelPredictor) -> None:
        if self.warmup:
            try:
                predictor.predict_texts([WARMUP_TEXT])
            except Exception as err:
                raise ModelLoadError(f"{predictor.version} loads but fails its warm-up prediction: {err}") from err

    def _forward(self, predictor: ModelPredictor) -> Callable[[list[str]], Any]:
        """What a worker runs for `predictor`: its forward passes, failing as `fault_injection` says."""
        assert self.batching.forward_batch_size is not None  # resolved in __init__
        forward: Callable[[list[str]], Any] = functools.partial(
            predictor.predict_texts, batch_size=self.batching.forward_batch_size
        )
        if self.fault_injection.get(predictor.version):
            forward = _failing(forward, predictor.version, self.fault_injection[predictor.version])
        return forward


def _failing(forward: Callable[[list[str]], Any], version: str, rate: float) -> Callable[[list[str]], Any]:
    """`forward` failing on the `rate` share of texts picked by their hash (fault injection)."""

    def run(texts: list[str]) -> Any:
        picked = [text for text in texts if stable_bucket(text, f"faults-{version}") < rate]
        if picked:
            raise RuntimeError(f"injected fault (--inject_errors {version}={rate:g}) on {len(picked)} of {len(texts)}")
        return forward(texts)

    return run


def _describe(error: BaseException) -> str:
    return f"inference failed: {type(error).__name__}: {error}"


def _resolve(
    future: Future[list[Prediction]], result: list[Prediction] | None = None, error: BaseException | None = None
) -> None:
    """Settles `future` unless its caller already gave up on it (cancelled at its deadline)."""
    if not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or [])
