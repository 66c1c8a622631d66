"""The Helm chart (deploy/helm/pantau) as a deployer meets it: `helm lint` passes, and what
`helm template` renders validates against the Kubernetes 1.30 schemas and does what the
values say, with the default values and with every stage scaled to two replicas; the two
ingests that run as StatefulSets give each pod the member settings pantau reads.

helm is the one scripts/install-helm builds into .pantau/tools (scripts/test runs it)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from dashboards.export import BUILDERS, render_files
from ingest.assignment import cameras_of
from ingest.sensors import subscription_of
from pantau.access import SECRETS
from pantau.settings import Settings, load_settings
from tests.conftest import REPO

HELM = REPO / ".pantau" / "tools" / "helm"
CHART = REPO / "deploy" / "helm" / "pantau"
KUBERNETES = "1.30.0"
STAGES = (
    "console",
    "detect",
    "ingest-camera",
    "ingest-http",
    "ingest-mqtt",
    "maintain",
    "notify",
    "sink",
    "streams",
    "telegram",
)
# Their members need a stable name: the camera ingest's member number, the MQTT session.
STATEFUL = ("ingest-camera", "ingest-mqtt")
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
# The values file a deployer writes to run every stage twice, on different nodes.
SCALED = {"stages": {stage: {"replicas": 2} for stage in STAGES}}
# A deployment without them still runs (no Telegram messages; /metrics closed to everyone).
# The Telegram token comes from Telegram, not from `pantau secrets init`; the metrics token is
# one it makes, but a Secret made before it did lacks it.
OPTIONAL_SECRETS = {"PANTAU_TELEGRAM_TOKEN", "PANTAU_METRICS_TOKEN"}
# The kubelet probes a pod from its node: the health server must listen on the pod's address.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104

Manifest = dict[str, Any]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        # Like a missing service: a failure, never a skip (scripts/test builds it).
        pytest.fail(f"helm is not installed at {HELM}: run scripts/install-helm", pytrace=False)
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )


def render(tmp_path: Path, values: dict[str, Any] | None = None, *options: str) -> list[Manifest]:
    """`helm template` with a values file and more command-line options (--set ...)."""
    args = ["template", "pantau", str(CHART), "--kube-version", KUBERNETES, *options]
    if values is not None:
        file = tmp_path / "values.yaml"
        file.write_text(yaml.safe_dump(values), encoding="utf-8")
        args += ["--values", str(file)]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Stage Deployments and StatefulSets by component label."""
    return {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for kind in ("Deployment", "StatefulSet")
        for m in of_kind(manifests, kind).values()
    }


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(component, container) of every pod the chart runs, the migration job's included."""
    for kind in ("Deployment", "StatefulSet", "Job"):
        for m in of_kind(manifests, kind).values():
            component = m["metadata"]["labels"]["app.kubernetes.io/component"]
            for container in m["spec"]["template"]["spec"]["containers"]:
                yield component, container


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    return render(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    return render(tmp_path_factory.mktemp("scaled"), SCALED)


@pytest.mark.parametrize("values", [None, SCALED], ids=["default", "scaled"])
def test_helm_lint_passes(values: dict[str, Any] | None, tmp_path: Path) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBERNETES]
    if values is not None:
        file = tmp_path / "values.yaml"
        file.write_text(yaml.safe_dump(values), encoding="utf-8")
        args += ["--values", str(file)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def validate(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        name = f"{manifest['kind']} {manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_default_render_is_valid_kubernetes(default: list[Manifest]) -> None:
    validate(default)


def test_scaled_render_is_valid_kubernetes(scaled: list[Manifest]) -> None:
    validate(scaled)


def test_options_render_valid_kubernetes(tmp_path: Path) -> None:
    """The options a site turns on: a Kafka CA, plain HTTP behind an Ingress, its own evidence
    claim, camera URLs from a Secret, a scraping operator."""
    values = {
        "kafka": {"caSecret": "kafka-ca", "securityProtocol": "SASL_SSL"},
        "ingestHttpTlsSecret": "",
        "evidence": {"existingClaim": "site-evidence"},
        "cameraSecret": "camera-urls",
        "metrics": {"serviceMonitor": {"enabled": True}},
    }
    manifests = render(tmp_path, values)
    # prometheus-operator's ServiceMonitor has no schema in Kubernetes' own API.
    validate([m for m in manifests if m["kind"] != "ServiceMonitor"])
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {
        "name": "pantau",
        "key": "PANTAU_METRICS_TOKEN",
    }
    assert "PersistentVolumeClaim" not in {m["kind"] for m in manifests}


def test_every_stage_runs_its_command_with_the_mounted_settings(default: list[Manifest]) -> None:
    found = workloads(default)
    assert sorted(found) == sorted(STAGES)
    assert {c: w["kind"] for c, w in found.items()} == {
        stage: "StatefulSet" if stage in STATEFUL else "Deployment" for stage in STAGES
    }
    commands = {
        component: container["args"]
        for component, container in containers(default)
        if component in found
    }
    assert commands["ingest-mqtt"] == ["--config", "/etc/pantau/pantau.yaml", "ingest", "sensors"]
    assert commands["ingest-camera"] == ["--config", "/etc/pantau/pantau.yaml", "ingest", "camera"]
    assert commands["detect"] == ["--config", "/etc/pantau/pantau.yaml", "detect"]
    for component, container in containers(default):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/etc/pantau"] == "config", component
        assert container["args"][:2] == ["--config", "/etc/pantau/pantau.yaml"], component
    config = of_kind(default, "ConfigMap")["pantau-config"]
    assert config["data"]["pantau.yaml"] == (CHART / "files" / "pantau.yaml").read_text(
        encoding="utf-8"
    )


def test_a_sites_settings_file_replaces_the_example_and_rolls_the_pods(
    default: list[Manifest], tmp_path: Path
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: trowulan\ntimezone: Asia/Jakarta\n", encoding="utf-8")
    manifests = render(tmp_path, None, "--set-file", f"config={site}")
    assert of_kind(manifests, "ConfigMap")["pantau-config"]["data"]["pantau.yaml"] == (
        "site: trowulan\ntimezone: Asia/Jakarta\n"
    )

    def checksums(rendered: list[Manifest]) -> dict[str, str]:
        return {
            c: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for c, d in workloads(rendered).items()
        }

    before, after = checksums(default), checksums(manifests)
    assert all(before[c] != after[c] for c in STAGES)


def test_every_stage_is_probed_on_healthz_and_readyz(
    default: list[Manifest], scaled: list[Manifest]
) -> None:
    for manifests in (default, scaled):
        probed = set()
        for component, container in containers(manifests):
            if component == "migrate":
                continue
            probed.add(component)
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["PANTAU__RUNTIME__HEALTH_HOST"] == EVERY_INTERFACE, component
            assert env["PANTAU__RUNTIME__HEALTH_PORT"] == "8081", component
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["health"] == 8081, component
            live = container["livenessProbe"]["httpGet"]
            ready = container["readinessProbe"]["httpGet"]
            assert (live["path"], live["port"]) == ("/healthz", "health"), component
            assert (ready["path"], ready["port"]) == ("/readyz", "health"), component
        assert sorted(probed) == sorted(STAGES)


def test_replicas_follow_the_values(default: list[Manifest], scaled: list[Manifest]) -> None:
    assert {c: d["spec"]["replicas"] for c, d in workloads(default).items()} == dict.fromkeys(
        STAGES, 1
    )
    assert {c: d["spec"]["replicas"] for c, d in workloads(scaled).items()} == dict.fromkeys(
        STAGES, 2
    )
    # A StatefulSet's pod names are stable: no fixed host name or Recreate strategy to keep
    # the MQTT ingest's session.
    for manifests in (default, scaled):
        mqtt = workloads(manifests)["ingest-mqtt"]["spec"]
        assert "hostname" not in mqtt["template"]["spec"]
        assert "strategy" not in mqtt
    # Two members: a node drain takes one at a time.
    assert of_kind(default, "PodDisruptionBudget") == {}
    budgets = of_kind(scaled, "PodDisruptionBudget")
    assert sorted(
        b["metadata"]["labels"]["app.kubernetes.io/component"] for b in budgets.values()
    ) == sorted(STAGES)


def test_one_stage_scaled_alone(tmp_path: Path) -> None:
    manifests = render(
        tmp_path,
        None,
        "--set",
        "stages.detect.replicas=3",
        "--set",
        "stages.telegram.enabled=false",
    )
    found = workloads(manifests)
    assert found["detect"]["spec"]["replicas"] == 3
    assert found["sink"]["spec"]["replicas"] == 1
    assert "telegram" not in found


def test_every_statefulset_has_its_headless_service(
    default: list[Manifest], scaled: list[Manifest]
) -> None:
    """A StatefulSet names the Service that gives its pods their DNS names (required by the
    1.30 schema); it selects the set's pods and exposes their health port."""
    for manifests in (default, scaled):
        services = of_kind(manifests, "Service")
        for stage in STATEFUL:
            spec = workloads(manifests)[stage]["spec"]
            service = services[spec["serviceName"]]["spec"]
            assert service["clusterIP"] == "None", stage
            assert service["selector"].items() <= spec["template"]["metadata"]["labels"].items()
            (port,) = service["ports"]
            assert (port["name"], port["port"], port["targetPort"]) == ("health", 8081, "health")


def env_of(manifests: list[Manifest], stage: str) -> dict[str, Manifest]:
    (container,) = workloads(manifests)[stage]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def member_settings(env: dict[str, Manifest], index: int, tmp_path: Path) -> Settings:
    """The settings pod `index` of a StatefulSet loads: its member variables, the pod index
    filled in as Kubernetes does, over the chart's settings file."""
    environ = {"PANTAU_SECRETS_FILE": str(tmp_path / "no-secrets.env")}
    for name, entry in env.items():
        if not name.startswith(("PANTAU__INGEST__", "PANTAU__MQTT__")):
            continue
        if "value" in entry:
            environ[name] = entry["value"]
        elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == POD_INDEX:
            environ[name] = str(index)
    return load_settings(CHART / "files" / "pantau.yaml", environ)


def test_camera_ingest_members_share_the_cameras(tmp_path: Path) -> None:
    manifests = render(tmp_path, None, "--set", "stages.ingest-camera.replicas=3")
    assert workloads(manifests)["ingest-camera"]["spec"]["replicas"] == 3
    env = env_of(manifests, "ingest-camera")
    assert env["PANTAU__INGEST__CAMERA_MEMBERS"]["value"] == "3"
    assert env["PANTAU__INGEST__CAMERA_MEMBER"]["valueFrom"] == {
        "fieldRef": {"fieldPath": POD_INDEX}
    }
    # Pods 0, 1 and 2 are members 0, 1 and 2 of 3, and every enabled camera is taken by one.
    taken: list[str] = []
    enabled: list[str] = []
    for index in range(3):
        settings = member_settings(env, index, tmp_path)
        ingest = settings.ingest
        assert (ingest.camera_member, ingest.camera_members) == (index, 3)
        enabled = [c.id for c in settings.cameras if c.enabled]
        taken += cameras_of(enabled, ingest.camera_member, ingest.camera_members)
    assert enabled
    assert sorted(taken) == sorted(enabled)


def test_one_camera_ingest_takes_every_camera(default: list[Manifest], tmp_path: Path) -> None:
    env = env_of(default, "ingest-camera")
    assert env["PANTAU__INGEST__CAMERA_MEMBERS"]["value"] == "1"
    settings = member_settings(env, 0, tmp_path)
    enabled = [c.id for c in settings.cameras if c.enabled]
    assert enabled
    assert cameras_of(enabled, settings.ingest.camera_member, 1) == enabled


def test_mqtt_ingest_replicas_share_one_subscription(tmp_path: Path) -> None:
    manifests = render(tmp_path, None, "--set", "stages.ingest-mqtt.replicas=2")
    assert workloads(manifests)["ingest-mqtt"]["spec"]["replicas"] == 2
    env = env_of(manifests, "ingest-mqtt")
    assert env["PANTAU__MQTT__SHARED_GROUP"]["value"] == "pantau-ingest"
    assert env["PANTAU__MQTT__MEMBER"]["valueFrom"] == {"fieldRef": {"fieldPath": POD_INDEX}}
    for index in range(2):
        mqtt = member_settings(env, index, tmp_path).mqtt
        assert (mqtt.shared_group, mqtt.member) == ("pantau-ingest", index)
        # The broker hands each reading to one member of the group.
        assert subscription_of(mqtt).startswith("$share/pantau-ingest/")


def test_one_mqtt_ingest_subscribes_alone(default: list[Manifest], tmp_path: Path) -> None:
    env = env_of(default, "ingest-mqtt")
    assert "PANTAU__MQTT__SHARED_GROUP" not in env
    assert "PANTAU__MQTT__MEMBER" not in env
    mqtt = member_settings(env, 0, tmp_path).mqtt
    assert mqtt.shared_group is None
    assert not subscription_of(mqtt).startswith("$share/")


def test_scaled_mqtt_ingest_needs_a_shared_group_name() -> None:
    result = helm(
        "template", "pantau", str(CHART), "--kube-version", KUBERNETES,
        "--set", "stages.ingest-mqtt.replicas=2", "--set", "stages.ingest-mqtt.sharedGroup=",
    )  # fmt: skip
    assert result.returncode != 0
    assert "stages.ingest-mqtt.sharedGroup" in result.stderr


def test_no_secret_value_is_rendered(default: list[Manifest], tmp_path: Path) -> None:
    """Every password and token comes from the deployer's Secret, by the key names of the .env
    file `pantau secrets init` writes; the chart renders no Secret and no secret value."""
    assert "Secret" not in {m["kind"] for m in default}
    made = {s.name for s in SECRETS}
    for manifests, secret in (
        (default, "pantau"),
        (render(tmp_path, None, "--set", "existingSecret=site"), "site"),
    ):
        for component, container in containers(manifests):
            for env in container["env"]:
                name = env["name"]
                if not any(word in name for word in ("PASSWORD", "TOKEN", "SECRET")):
                    continue
                assert "value" not in env, f"{component}: {name} has a value in the manifest"
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret, f"{component}: {name}"
                if ref.get("optional"):
                    assert ref["key"] in OPTIONAL_SECRETS, f"{component}: {name}"
                else:
                    assert ref["key"] in made, (
                        f"{component}: {name} from {ref['key']}, which `pantau secrets init` does not make"
                    )


def test_console_password_only_where_compose_gives_it(default: list[Manifest]) -> None:
    given = {
        component
        for component, container in containers(default)
        if any(e["name"] == "PANTAU__POSTGRES__CONSOLE_PASSWORD" for e in container["env"])
    }
    assert given == {"console", "telegram", "migrate"}


def test_services_reach_the_console_and_the_http_ingest(default: list[Manifest]) -> None:
    pods = {c: d["spec"]["template"] for c, d in workloads(default).items()}
    services = of_kind(default, "Service")
    for name, component, port in (
        ("pantau-console", "console", 8090),
        ("pantau-ingest-http", "ingest-http", 8443),
    ):
        service = services[name]
        labels = pods[component]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        (target,) = service["spec"]["ports"]
        (container,) = pods[component]["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]}[
            target["targetPort"]
        ] == port


def test_evidence_claim_is_shared_by_detect_notify_and_console(default: list[Manifest]) -> None:
    (claim,) = of_kind(default, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    using = {}
    for component, deployment in workloads(default).items():
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if (
                volume.get("persistentVolumeClaim", {}).get("claimName")
                == claim["metadata"]["name"]
            ):
                using[component] = volume["name"]
    assert sorted(using) == ["console", "detect", "notify"]
    for component, deployment in workloads(default).items():
        if component in using:
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts[using[component]] == env["PANTAU__DUMPING__EVIDENCE__DIR"], component


def test_dashboards_configmap_holds_every_dashboard(default: list[Manifest]) -> None:
    maps = [
        m
        for m in of_kind(default, "ConfigMap").values()
        if m["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    (dashboards,) = maps
    assert sorted(dashboards["data"]) == sorted(f"{name}.json" for name in BUILDERS)
    uids = {json.loads(text)["uid"] for text in dashboards["data"].values()}
    assert len(uids) == len(BUILDERS)
    for label, key in (("grafana_datasource", "pantau.yaml"), ("grafana_alert", "pantau.yaml")):
        (provisioning,) = [
            m
            for m in of_kind(default, "ConfigMap").values()
            if m["metadata"]["labels"].get(label) == "1"
        ]
        assert yaml.safe_load(provisioning["data"][key])["apiVersion"] == 1


def test_chart_copies_are_what_the_export_writes_now() -> None:
    """The chart carries its own copy of the dashboards and of the example settings; they must
    not drift from the code. Regenerate as the chart's README.md says."""
    settings = load_settings(REPO / "configs" / "pantau.yaml", {})
    rendered = render_files(settings)
    folder = CHART / "files" / "grafana"
    copied = {
        str(path.relative_to(folder)): path.read_text(encoding="utf-8")
        for path in folder.rglob("*")
        if path.is_file()
    }
    assert sorted(copied) == sorted(rendered)
    for name, content in rendered.items():
        assert copied[name] == content, f"files/grafana/{name} differs from the export"
    example = (REPO / "configs" / "pantau.yaml").read_text(encoding="utf-8")
    assert (CHART / "files" / "pantau.yaml").read_text(encoding="utf-8") == example, (
        "files/pantau.yaml differs from configs/pantau.yaml"
    )
