"""The `StateStore` contract (clf/deploy/store.py), asserted on every store: the registry's folder, SQLite, and a
real PostgreSQL server started by the tests (tests/helpers/postgres.py).

Lease and cool-down expiry run on the real clock with short leases: a test sleeps past an expiry, never races
one. The last tests are about clocks: the stores on one host judge by the caller's clock (a test seam), PostgreSQL
by the database's, so hosts whose clocks disagree never both hold the lease.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace

import pytest
import sqlalchemy as sa

from clf.deploy import Action, Decision, DeploymentState, DeploymentStore, LiveSince, Phase, RefusedRollback
from clf.deploy.sql_store import SqlDeploymentStore
from clf.deploy.store import ReplicaRecord, StateStore
from tests.helpers.postgres import postgres_available

_databases = itertools.count()
needs_postgres = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL's server binaries are not installed")


@pytest.fixture
def open_second(request, tmp_path):
    """A factory of store objects on one shared store (as separate replicas open it): ``open_second()``."""
    kind = request.param
    if kind == "files":
        yield lambda **kw: DeploymentStore(tmp_path, **kw)
        return
    if kind == "sqlite":
        yield lambda **kw: SqlDeploymentStore(f"sqlite:///{tmp_path / 'state.db'}", **kw)
        return
    server = request.getfixturevalue("postgres_server")
    name = f"deploy_{next(_databases)}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    opened: list[SqlDeploymentStore] = []

    def open_store(**kw) -> SqlDeploymentStore:
        opened.append(SqlDeploymentStore(server.url.rsplit("/", 1)[0] + "/" + name, **kw))
        return opened[-1]

    yield open_store
    for store in opened:
        store.engine.dispose()
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


ALL = pytest.mark.parametrize(
    "open_second", ["files", "sqlite", pytest.param("postgresql", marks=needs_postgres)], indirect=True
)
ONE_HOST = pytest.mark.parametrize("open_second", ["files", "sqlite"], indirect=True)


@pytest.fixture
def store(open_second) -> StateStore:
    return open_second()


@ALL
def test_an_empty_store_is_idle_with_nothing_logged(store):
    state = store.load()
    assert (state.phase, state.candidate, state.live) == (Phase.IDLE, None, None)
    assert store.decisions() == [] and store.lease() is None and store.replicas() == []
    assert store.where


@ALL
def test_a_saved_state_loads_back_in_another_store_object(store, open_second):
    state = DeploymentState(
        phase=Phase.CANARY,
        strategy="canary",
        candidate="v1.1.0",
        baseline="v1.0.0",
        stages=[5, 50, 100],
        stage_index=1,
        stage_started_at=1000.5,
        baseline_metrics={"v1.0.0": {"total": 40, "p95_latency_ms": 12.5}},
        live=LiveSince("v1.0.0", 900.0),
        refused_rollback=RefusedRollback("v0.9.0", 800.0, "nothing to go back to"),
    )
    store.save(state)
    assert open_second().load() == state
    state.stage_index = 2
    store.save(state)
    assert open_second().load().stage == 100, "a second save replaces the first"


@ALL
def test_decisions_come_back_oldest_first_and_limit_keeps_the_newest(store, open_second):
    actions = [Action.REQUESTED, Action.STAGE_STARTED, Action.STAGE_PASSED, Action.PROMOTED]
    for n, action in enumerate(actions):
        assert store.record(Decision(action, "v1.1.0", f"step {n}", at=1000.0 + n)).action == action
    other = open_second()
    assert [d["action"] for d in other.decisions()] == actions
    assert [d["reason"] for d in other.decisions(2)] == ["step 2", "step 3"]
    assert other.decisions(0) == other.decisions()
    assert other.decisions()[0]["at_iso"] == "1970-01-01T00:16:40Z"


@ALL
def test_locked_excludes_another_store_object_and_is_reentrant(store, open_second):
    other, entered, release = open_second(), threading.Event(), threading.Event()

    def replica() -> None:
        with other.locked():
            entered.set()
            release.wait(10)

    with store.locked(), store.locked():  # re-entrant within one thread
        worker = threading.Thread(target=replica)
        worker.start()
        assert not entered.wait(0.5), "another store object took the lock while it was held"
    assert entered.wait(10), "the lock was not handed on once released"
    with pytest.raises(TimeoutError), open_second(lock_timeout=0.2).locked():
        pass
    release.set()
    worker.join(10)


@ALL
def test_the_lease_is_taken_renewed_refused_to_others_and_released(store, open_second):
    other = open_second()
    taken = store.acquire_lease("a", 60)
    assert taken.holder == "a" and taken.expires_at == pytest.approx(taken.acquired_at + 60)
    assert other.lease() == taken and taken.held_by_other("b", other.clock())
    assert other.acquire_lease("b", 60) is None, "held by a"
    time.sleep(0.01)
    renewed = store.acquire_lease("a", 60)
    assert renewed.acquired_at == taken.acquired_at and renewed.expires_at > taken.expires_at
    other.release_lease("b")
    assert store.lease() == renewed, "only the holder releases it"
    store.release_lease("a")
    assert other.lease() is None
    assert other.acquire_lease("b", 60).holder == "b", "free once released"


@ALL
def test_an_expired_lease_goes_to_the_next_replica_that_asks(store, open_second):
    first = store.acquire_lease("a", 0.2)
    time.sleep(0.4)
    assert not first.held_by_other("b", store.clock())
    taken = open_second().acquire_lease("b", 60)
    assert taken.holder == "b" and taken.acquired_at >= first.expires_at
    assert store.acquire_lease("a", 60) is None


@ALL
def test_replica_records_are_put_replaced_listed_by_id_and_dropped(store, open_second):
    snapshot = {"at": 10.0, "versions": {"v1.0.0": {"predictions": 3, "errors": 0, "latency": [1, 2, 0]}}}
    b = ReplicaRecord("b", 10.0, url="http://b", live_version="v1.0.0", traffic_shares={"v1.0.0": 1.0})
    a = ReplicaRecord("a", 11.0, host="h", pid=7, started_at=1.0, loaded_versions=["v1.0.0"], snapshots=[snapshot])
    store.put_replica(b)
    store.put_replica(a)
    other = open_second()
    assert other.replicas() == [a, b]
    stopped = replace(a, heartbeat_at=12.0, stopped_at=12.0)
    other.put_replica(stopped)
    assert store.replicas() == [stopped, b], "a record replaces the replica's last one"
    store.drop_replica("b")
    store.drop_replica("never-seen")
    assert other.replicas() == [stopped]


@ALL
def test_an_alert_is_claimed_once_per_cool_down_across_store_objects(store, open_second):
    other = open_second()
    assert store.claim_alert("high_error_rate:v1", 60)
    assert not other.claim_alert("high_error_rate:v1", 60) and not store.claim_alert("high_error_rate:v1", 60)
    assert other.claim_alert("high_latency:v1", 60), "another alert has its own cool-down"
    assert store.claim_alert("short", 0.2)
    time.sleep(0.4)
    assert other.claim_alert("short", 0.2), "claimable again after the cool-down"


@ONE_HOST
def test_a_store_on_one_host_judges_by_the_callers_clock(store, open_second):
    other = open_second()
    assert store.clock(1000.0) == 1000.0
    assert store.acquire_lease("a", 10, now=1000.0).expires_at == 1010.0
    assert other.acquire_lease("b", 10, now=1009.0) is None
    assert other.acquire_lease("b", 10, now=1010.0).holder == "b"
    assert store.claim_alert("k", 60, now=1000.0) and not other.claim_alert("k", 60, now=1059.0)
    assert other.claim_alert("k", 60, now=1060.0)


@pytest.mark.parametrize("open_second", [pytest.param("postgresql", marks=needs_postgres)], indirect=True)
def test_hosts_with_skewed_clocks_never_both_hold_the_lease_on_postgresql(open_second):
    behind, ahead = open_second(), open_second()
    skew = 300.0  # the two hosts' clocks five minutes either side of the database's
    held = behind.acquire_lease("behind", 30, now=time.time() - skew)
    assert held is not None
    assert ahead.acquire_lease("ahead", 30, now=time.time() + skew) is None, "the lease is the behind host's"
    assert held.expires_at == pytest.approx(ahead.clock() + 30, abs=5), "expiry is on the database's clock"
    assert ahead.lease().held_by_other("ahead", ahead.clock())
    assert behind.claim_alert("k", 60, now=time.time() - skew)
    assert not ahead.claim_alert("k", 60, now=time.time() + skew), "the cool-down is on the database's clock too"
