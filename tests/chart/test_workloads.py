"""What the rendered workloads promise: hardened pods, probes on the admin port, ports, toggles,
secrets wiring and TLS mounts."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import CHART_DIR, SERVICES

DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


@pytest.fixture(params=["default_render", "production_render"])
def any_render(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("svc", SERVICES)
def test_pods_are_hardened(any_render, svc):
    pod = any_render.deployment(svc)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = any_render.container(svc)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root needs a writable /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in any_render.container(svc)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("svc", SERVICES)
def test_probes_use_the_admin_port(any_render, svc):
    c = any_render.container(svc)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": DEFAULTS[svc]["grpcPort"], "admin": DEFAULTS[svc]["adminPort"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # Start-up runs the migrations: the startup probe must allow minutes, not seconds.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("svc", SERVICES)
def test_each_deployment_runs_its_own_binary_on_its_ports(default_render, svc):
    c = default_render.container(svc)
    assert c["command"] == [f"/usr/local/bin/spoke-{svc}"]
    assert c["image"] == "spoke/spoke:0.1.0", "tag defaults to the chart's appVersion"
    env = default_render.env(svc)
    assert env["SPOKE_GRPC__PORT"]["value"] == str(DEFAULTS[svc]["grpcPort"])
    assert env["SPOKE_ADMIN__PORT"]["value"] == str(DEFAULTS[svc]["adminPort"])
    assert c["envFrom"][0] == {"configMapRef": {"name": "spoke-config"}}

    service = default_render.get("Service", f"spoke-{svc}")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {
        "grpc": (DEFAULTS[svc]["grpcPort"], "grpc"),
        "admin": (DEFAULTS[svc]["adminPort"], "admin"),
    }
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(DEFAULTS[svc]["adminPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    selector = service["spec"]["selector"]
    pod_labels = default_render.deployment(svc)["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items(), "Service must select this service's pods"
    assert selector["app.kubernetes.io/component"] == svc


@pytest.mark.parametrize("grace", [25, 60])
def test_termination_grace_exceeds_the_shutdown_grace(render, grace):
    rendered = render({"global": {"shutdownGraceSecs": grace}})
    assert rendered.config()["SPOKE_SHUTDOWN_GRACE_SECS"] == str(grace)
    for svc in SERVICES:
        pod = rendered.deployment(svc)["spec"]["template"]["spec"]
        pre_stop = int(rendered.container(svc)["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert pod["terminationGracePeriodSeconds"] > grace + pre_stop


def test_disabling_a_service_removes_all_its_objects(render):
    everything_on = {"export": {"hpa": {"enabled": True}, "pdb": {"enabled": True}}}
    on = render(everything_on)
    assert "spoke-export" in on.names("HorizontalPodAutoscaler")
    off = render({"export": {"enabled": False, "hpa": {"enabled": True}, "pdb": {"enabled": True}}})
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert not any(n.endswith("-export") for n in off.names(kind)), kind
    assert off.names("Deployment") == {f"spoke-{s}" for s in SERVICES if s != "export"}
    assert "spoke-export" not in off.notes


def test_hpa_and_pdb_appear_only_where_enabled(render):
    rendered = render(
        {
            "dedupe": {
                "hpa": {"enabled": True, "minReplicas": 3, "maxReplicas": 9},
                "pdb": {"enabled": True, "minAvailable": "50%"},
            }
        }
    )
    assert rendered.names("HorizontalPodAutoscaler") == {"spoke-dedupe"}
    assert rendered.names("PodDisruptionBudget") == {"spoke-dedupe"}
    hpa = rendered.get("HorizontalPodAutoscaler", "spoke-dedupe")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "spoke-dedupe"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    # The HPA owns the replica count; a fixed one would fight it on every upgrade.
    assert "replicas" not in rendered.deployment("dedupe")["spec"]
    assert rendered.deployment("export")["spec"]["replicas"] == 2
    pdb = rendered.get("PodDisruptionBudget", "spoke-dedupe")["spec"]
    assert pdb["minAvailable"] == "50%"
    assert pdb["selector"]["matchLabels"]["app.kubernetes.io/component"] == "dedupe"


def test_grpc_tls_mounts_the_certificate_only_when_enabled(default_render, render):
    assert "SPOKE_GRPC__TLS__CERT_PATH" not in default_render.config()
    assert all(
        v["name"] != "grpc-tls"
        for v in default_render.deployment("export")["spec"]["template"]["spec"]["volumes"]
    )

    rendered = render({"global": {"grpcTls": {"enabled": True, "secretName": "spoke-tls"}}})
    config = rendered.config()
    for svc in SERVICES:
        pod = rendered.deployment(svc)["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "grpc-tls")
        assert volume["secret"]["secretName"] == "spoke-tls"
        files = {i["path"] for i in volume["secret"]["items"]}
        mount = next(m for m in rendered.container(svc)["volumeMounts"] if m["name"] == "grpc-tls")
        assert mount["readOnly"] is True
        # The env must point at files that the mount really provides.
        for var in ("SPOKE_GRPC__TLS__CERT_PATH", "SPOKE_GRPC__TLS__KEY_PATH"):
            directory, _, name = config[var].rpartition("/")
            assert directory == mount["mountPath"] and name in files, var
        service = rendered.get("Service", f"spoke-{svc}")
        grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert grpc_port["appProtocol"] == "grpcs"


def test_rs256_keys_are_mounted_and_listed_in_the_loader_array_syntax(render):
    rendered = render(
        {
            "global": {
                "auth": {
                    "rs256": {
                        "publicKeysSecret": "jwt-pub",
                        "publicKeys": ["a.pem", "b.pem"],
                        "privateKeySecret": "jwt-priv",
                    }
                }
            }
        }
    )
    paths = json.loads(rendered.config()["SPOKE_AUTH__RS256_PUBLIC_KEY_PATHS"])
    assert paths == ["/etc/spoke/jwt/public/a.pem", "/etc/spoke/jwt/public/b.pem"]
    assert rendered.config()["SPOKE_AUTH__RS256_PRIVATE_KEY_PATH"] == "/etc/spoke/jwt/private/private.pem"
    env = rendered.env("connection")
    assert "SPOKE_AUTH__HS256_SECRET" not in env, "RS256 replaces the HS256 secret"
    mounts = {m["name"]: m["mountPath"] for m in rendered.container("connection")["volumeMounts"]}
    assert mounts["jwt-public"] == "/etc/spoke/jwt/public"
    assert mounts["jwt-private"] == "/etc/spoke/jwt/private"


def test_secrets_come_from_existing_secrets(default_render, production_render):
    env = default_render.env("export")
    assert env["SPOKE_DATABASE__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "spoke-secrets",
        "key": "database-url",
    }
    assert env["SPOKE_AUTH__HS256_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "jwt-hs256-secret"
    assert "SPOKE_KAFKA__SASL_PASSWORD" not in env, "PLAINTEXT needs no SASL password"
    connection = default_render.env("connection")
    for name, key in [
        ("SPOKE_HUBSPOT__CLIENT_ID", "hubspot-client-id"),
        ("SPOKE_HUBSPOT__CLIENT_SECRET", "hubspot-client-secret"),
        ("SPOKE_TOKENS__ENCRYPTION_KEY", "token-encryption-key"),
    ]:
        ref = connection[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"], ref["optional"]) == ("spoke-secrets", key, True)
    assert "SPOKE_HUBSPOT__CLIENT_SECRET" not in env, "HubSpot app secret only where needed"

    prod = production_render.env("export")
    assert prod["SPOKE_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "spoke-kafka",
        "key": "password",
    }
    assert prod["SPOKE_DATABASE__URL"]["valueFrom"]["secretKeyRef"] == {"name": "spoke-db", "key": "url"}
    config = production_render.config()
    assert config["SPOKE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["SPOKE_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    # No secret value may land in the ConfigMap.
    assert not any("PASSWORD" in k or "SECRET" in k for k in config)


def test_database_url_is_assembled_from_host_and_password_secret(render):
    rendered = render(
        {
            "global": {
                "database": {
                    "host": "pg.internal",
                    "port": 6432,
                    "name": "spoke",
                    "user": "svc",
                    "passwordSecret": "pg",
                    "params": "sslmode=require",
                }
            }
        }
    )
    env_list = rendered.container("mapping")["env"]
    names = [e["name"] for e in env_list]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert names.index("DATABASE_PASSWORD") < names.index("SPOKE_DATABASE__URL")
    env = rendered.env("mapping")
    assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "password"}
    assert env["SPOKE_DATABASE__URL"]["value"] == (
        "postgres://svc:$(DATABASE_PASSWORD)@pg.internal:6432/spoke?sslmode=require"
    )


def test_extra_env_and_env_from_reach_only_their_service(render):
    rendered = render(
        {
            "global": {"env": {"SPOKE_KAFKA__EXTRA__LINGER_MS": 5}},
            "export": {
                "env": {"SPOKE_EXPORT__BATCH_SIZE": 100},
                "extraEnv": [{"name": "EXTRA_ONE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "extraEnvFrom": [{"secretRef": {"name": "export-extra"}}],
                "secretEnv": [{"name": "SPOKE_EXPORT__API_KEY", "key": "api-key", "secret": "other"}],
            },
        }
    )
    env = rendered.env("export")
    assert env["SPOKE_EXPORT__BATCH_SIZE"]["value"] == "100"
    assert env["EXTRA_ONE"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "k"}
    assert env["SPOKE_EXPORT__API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "other",
        "key": "api-key",
        "optional": False,
    }
    assert {"secretRef": {"name": "export-extra"}} in rendered.container("export")["envFrom"]
    assert rendered.config()["SPOKE_KAFKA__EXTRA__LINGER_MS"] == "5"
    mapping = rendered.env("mapping")
    assert "SPOKE_EXPORT__BATCH_SIZE" not in mapping and "EXTRA_ONE" not in mapping
    assert {"secretRef": {"name": "export-extra"}} not in rendered.container("mapping")["envFrom"]


def test_config_change_rolls_the_pods(default_render, render):
    before = default_render.deployment("export")["spec"]["template"]["metadata"]["annotations"]
    after = render({"global": {"logFilter": "debug"}}).deployment("export")["spec"]["template"][
        "metadata"
    ]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]


def test_image_digest_wins_over_tag(render):
    digest = "sha256:" + "a" * 64
    rendered = render({"global": {"image": {"tag": "1.2.3", "digest": digest}}})
    assert rendered.container("export")["image"] == f"spoke/spoke@{digest}"
    assert render({"global": {"image": {"tag": "1.2.3"}}}).container("export")["image"] == "spoke/spoke:1.2.3"


def test_extra_volumes_are_mounted_in_every_service(production_render, default_render):
    for svc in SERVICES:
        pod = production_render.deployment(svc)["spec"]["template"]["spec"]
        assert {"name": "pg-ca", "secret": {"secretName": "postgres-ca"}} in pod["volumes"]
        mounts = {m["name"]: m for m in production_render.container(svc)["volumeMounts"]}
        assert mounts["pg-ca"]["mountPath"] == "/etc/spoke/pg-ca"
    names = {v["name"] for v in default_render.deployment("export")["spec"]["template"]["spec"]["volumes"]}
    assert names == {"tmp"}, "defaults mount nothing but /tmp"
