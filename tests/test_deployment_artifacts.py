"""Static checks of the deployment artifacts: the Dockerfile, docker-compose.yml, tools/deploy/ (nginx, Prometheus)
and the Kubernetes manifests in tools/deploy/kubernetes.

No container engine or cluster runs where clf is built and tested, so none of these is built or applied here (docs/
SCALING.md says so). What can be checked without one is: every ``clf`` subcommand and option they pass exists, every
file they copy or mount is in the repository, ports and probe paths match what the service listens on and answers,
and the manifests refer to each other by the right names and labels. The nginx and Prometheus configurations are
also checked by the tools themselves (``nginx -t``, ``promtool check config``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from clf.cli import main
from clf.monitoring import PredictionMonitor, ServiceMetrics
from clf.monitoring.quality_metrics import QualityMetrics
from lightning_app.app import create_app
from tests.conftest import REPO

KUBERNETES = REPO / "tools" / "deploy" / "kubernetes"


def _options(*command: str) -> set[str]:
    """The options ``clf COMMAND --help`` lists, with underscores (the CLI takes dashes too)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*command, "--help"])
    return {option.replace("-", "_") for option in re.findall(r"--([a-z][a-z0-9_.-]*)", out.getvalue())}


SERVE_OPTIONS = _options("serve")
RETRAIN_OPTIONS = _options("retrain", "run")


def _routes() -> set[str]:
    service = SimpleNamespace(monitor=PredictionMonitor(), metrics=ServiceMetrics())
    return {route.path for route in create_app(service).routes}


ROUTES = _routes()


def _check_clf_args(args: list[str]) -> None:
    """``clf`` arguments: a known subcommand, then options it has (``--name value`` or ``--name=value``)."""
    subcommand, *rest = args
    known = {"serve": SERVE_OPTIONS, "retrain": RETRAIN_OPTIONS}
    assert subcommand in known, f"clf {subcommand}: not a subcommand these files should run"
    for token in rest:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            assert name in known[subcommand], f"clf {subcommand} has no option --{name}"


def _option(args: list[str], name: str) -> str:
    for index, token in enumerate(args):
        if token == f"--{name}":
            return args[index + 1]
        if token.startswith(f"--{name}="):
            return token.split("=", 1)[1]
    raise AssertionError(f"--{name} not given in {args}")


# ------------------------------------------------------------------------------------------------------ Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n\s*", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_copies_files_that_exist_and_runs_a_real_clf_serve():
    instructions = _dockerfile()
    for kind, rest in instructions:
        if kind == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    command = json.loads(dict(instructions)["CMD"])
    assert entrypoint == ["clf"] and 'clf = "clf.cli:main"' in (REPO / "pyproject.toml").read_text()
    _check_clf_args(command)
    assert dict(instructions)["EXPOSE"] == _option(command, "port")
    assert _option(command, "host") == "0.0.0.0", "inside a container the service must listen on every interface"
    assert "/health" in dict(instructions)["HEALTHCHECK"] and "/health" in ROUTES
    install = dict((k, v) for k, v in instructions if "pip" in v)["RUN"]
    extras = re.search(r'pip install -c constraints\.txt "\.\[([a-z,]+)\]"', install)
    declared = re.findall(r"^(\w+) = \[", (REPO / "pyproject.toml").read_text(), flags=re.M)
    assert extras and set(extras.group(1).split(",")) <= set(declared), "extras that exist, constrained"


def test_the_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "models"} <= set(ignored)


# ------------------------------------------------------------------------------------------------ docker compose


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_runs_replicas_that_nginx_and_prometheus_both_reach():
    services = _compose()["services"]
    replicas = {name: spec for name, spec in services.items() if spec.get("image") == "clf:latest"}
    assert len(replicas) >= 2, "several replicas"
    for name, spec in replicas.items():
        _check_clf_args(spec["command"])
        assert _option(spec["command"], "fleet.replica_id") == name
        assert _option(spec["command"], "fleet.advertise_url") == f"http://{name}:{_option(spec['command'], 'port')}"
        prometheus = _option(spec["command"], "fleet.prometheus_url")
        assert re.match(r"http://prometheus:9090$", prometheus) and "prometheus" in services
        state_db = spec["environment"]["CLF_STATE_DB"]
        assert state_db.startswith("postgresql+psycopg://") and "@postgres:5432/" in state_db
    nginx = (REPO / "tools" / "deploy" / "nginx.conf").read_text()
    upstreams = set(re.findall(r"server ([\w-]+:\d+)", nginx))
    wanted = {f"{name}:{_option(spec['command'], 'port')}" for name, spec in replicas.items()}
    assert upstreams == wanted, "nginx balances over exactly the replicas"
    scrape = yaml.safe_load((REPO / "tools" / "deploy" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert set(job["static_configs"][0]["targets"]) == wanted and job["metrics_path"] in ROUTES
    for spec in services.values():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{source}: mounted but not in the repository"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_nginx_accepts_its_configuration(tmp_path):
    text = (REPO / "tools" / "deploy" / "nginx.conf").read_text()
    text = re.sub(r"server clf-\d+:", "server 127.0.0.1:", text)  # compose's host names do not resolve here
    (tmp_path / "nginx.conf").write_text(text)
    (tmp_path / "logs").mkdir()
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
         "-g", f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/logs/error.log;"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent" in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_prometheus_accepts_its_configuration():
    config = REPO / "tools" / "deploy" / "prometheus.yml"
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_the_alerting_rules_check_and_pass_their_unit_tests():
    deploy = REPO / "tools" / "deploy"
    checked = subprocess.run(["promtool", "check", "rules", "prometheus-rules.yml"], cwd=deploy, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "prometheus-rules.test.yml"], cwd=deploy,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _metric_families() -> set[str]:
    """The metric names a replica exposes (a histogram's with its _bucket, _count and _sum series)."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = ServiceMetrics()
    metrics.loaded("v1")
    metrics.observe("v1", 10.0, [0.9, None], service_ms=5.0, batch_size=2)
    metrics.request(200, "v1", "live")
    metrics.rejected("shed")
    metrics.went_live("v1")
    metrics.traffic({"v1": 1.0})
    quality = QualityMetrics(metrics.registry)
    quality.watching("v1", 0.8)
    quality.flagged("v1", 1)
    quality.window("v1", {"alarm": True, "mmd": {"p_value": 0.001}, "class_mix": {"psi": 0.2},
                          "out_of_scope": {"share": 0.3}, "estimated_accuracy": {"value": 0.7}})  # fmt: skip
    quality.labelled("v1", 0.75, 0.2)
    text = metrics.exposition().decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples} | {"up"}


def _expressions() -> list[str]:
    dashboard = json.loads((REPO / "tools" / "deploy" / "grafana" / "clf.json").read_text())
    rules = yaml.safe_load((REPO / "tools" / "deploy" / "prometheus-rules.yml").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]] + [
        rule["expr"] for group in rules["groups"] for rule in group["rules"]
    ]


def test_the_dashboard_and_the_rules_use_only_metrics_a_replica_exposes():
    exposed = _metric_families()
    used = set()
    for expression in _expressions():
        for name in re.findall(r"\b(clf_[a-z_]+|up)\b(?=\s*[{\[)])", expression):
            assert name in exposed, f"{name} in {expression!r} is no metric of clf.monitoring.metrics"
            used.add(name)
    assert len(used) >= 10, f"the check found only {sorted(used)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_every_dashboard_query_parses(tmp_path):
    dashboard = json.loads((REPO / "tools" / "deploy" / "grafana" / "clf.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"clf:dashboard_query_{index}", "expr": query} for index, query in enumerate(queries)
    ]}]}  # fmt: skip
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run(["promtool", "check", "rules", str(tmp_path / "queries.yml")], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    provisioning = yaml.safe_load(
        (REPO / "tools" / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in provisioning["datasources"]}
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} <= uids


# --------------------------------------------------------------------------------------------------- Kubernetes


def _manifests() -> dict[str, dict]:
    documents = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "kind" in document and document["kind"] != "Kustomization":
                assert {"apiVersion", "kind", "metadata"} <= set(document), path
                documents[document["kind"]] = document
    return documents


def test_the_manifests_are_all_in_the_kustomization():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (KUBERNETES / resource).is_file(), resource
    assert {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "retrain-cronjob.yaml"} <= set(
        kustomization["resources"]
    )


def test_the_deployment_probes_ports_and_arguments_match_the_service():
    manifests = _manifests()
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    _check_clf_args(container["args"])
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["http"] == int(_option(container["args"], "port"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ml" in ROUTES
    assert container["livenessProbe"]["httpGet"]["path"] == "/health" in ROUTES
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port
    env = {item["name"] for item in container["env"]}
    assert "CLF_STATE_DB" in env, "replicas on separate nodes share the SQL state store"
    for reference in re.findall(r"\$\((\w+)\)", " ".join(container["args"])):
        assert reference in env, f"$({reference}) is not an environment variable of the container"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in ROUTES and annotations["prometheus.io/port"] == str(port["http"])
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert _option(container["args"], "registry").startswith(mounts["registry"])
    pvc = manifests["PersistentVolumeClaim"]
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "every replica reads one registry"
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30, "longer than the server's graceful shutdown"


def test_service_autoscaler_budget_and_monitor_select_the_deployment():
    manifests = _manifests()
    deployment = manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    service = manifests["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    hpa = manifests["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = manifests["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain can still move one replica"
    monitor = manifests["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}


def test_the_retraining_cronjob_runs_a_real_clf_retrain_on_the_same_registry():
    manifests = _manifests()
    job = manifests["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    args = container["args"]
    assert args[:2] == ["retrain", "run"]
    _check_clf_args([args[0], *args[2:]])
    config = _option(args, "config")
    assert config.startswith("/app/configs/") and (REPO / "configs" / Path(config).name).is_file()
    (volume,) = job["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == manifests["PersistentVolumeClaim"]["metadata"]["name"]
    deployment = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert _option(args, "registry") == _option(deployment["args"], "registry")
