#!/usr/bin/env python3
"""Checks the deploy kit under deploy/ against the binary it deploys.

    python3 .ci/deploy_check.py target/debug/leadrelay

- every YAML and JSON file under deploy/ parses;
- the LEADRELAY_* variables: deploy/systemd/leadrelay.env lists exactly those `serve --help`
  shows (each with its default or an example), and every other file names only known ones;
- the systemd unit passes `systemd-analyze verify` without a word and stays below an
  exposure level of 2.0 in `systemd-analyze security`, with ExecStart pointed at the binary;
- the settings each kit gives the service (the unit's ExecStart with the env file, the
  Kubernetes ConfigMap and Secret, the compose replicas' environment, the image's ENV) are
  accepted by `leadrelay serve`, which is started with them and must come up serving;
- the files compose.yaml mounts or builds from exist;
- the Kubernetes manifests validate against the Kubernetes API schemas (kubernetes-validate,
  offline, strict: unknown fields fail), both as files and as `kubectl kustomize` renders them.

Any failure exits non-zero with what was wrong.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV_FILE = DEPLOY / "systemd" / "leadrelay.env"
UNIT = DEPLOY / "systemd" / "leadrelay.service"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

# Read by the service besides its flags' variables: the log filter.
EXTRA_ENV = {"RUST_LOG"}

# Kinds whose schema is a CRD, not part of Kubernetes' API: kubernetes-validate has none.
CRD_KINDS = {"ServiceMonitor"}

# The highest `systemd-analyze security` exposure the unit may have (0 = fully locked down,
# 10 = none); 1.5 when written.
MAX_EXPOSURE = 2.0

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}", file=sys.stderr)


def ok(message):
    print(f"ok   {message}")


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def check_parses():
    count = 0
    for path in sorted(DEPLOY.rglob("*")):
        try:
            if path.suffix in (".yaml", ".yml"):
                list(yaml.safe_load_all(path.read_text()))
            elif path.suffix in (".json", ".geojson"):
                json.loads(path.read_text())
            else:
                continue
            count += 1
        except (yaml.YAMLError, ValueError) as e:
            fail(f"{path.relative_to(ROOT)} does not parse: {e}")
    ok(f"{count} YAML and JSON files under deploy/ parse")


def known_env(binary):
    help_text = run([binary, "serve", "--help"], check=True).stdout
    names = set(re.findall(r"\[env: (LEADRELAY_[A-Z0-9_]+)", help_text))
    if len(names) < 30:
        fail(f"`serve --help` shows only {len(names)} variables: {sorted(names)}")
    return names | EXTRA_ENV


def env_file_lines(path):
    """The KEY=value lines of an env file, commented out or not: [(key, value, active)]."""
    lines = []
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"(#?)([A-Z][A-Z0-9_]*)=(.*)", line)
        if m:
            lines.append((m.group(2), m.group(3), m.group(1) == ""))
    return lines


def check_env_names(known):
    listed = {key for key, _, _ in env_file_lines(ENV_FILE)}
    if listed != known:
        fail(
            f"{ENV_FILE.relative_to(ROOT)}: missing {sorted(known - listed)}, "
            f"unknown {sorted(listed - known)}"
        )
    else:
        ok(f"{ENV_FILE.relative_to(ROOT)} lists all {len(known)} variables the service reads")
    for path in [COMPOSE, DOCKERFILE, *sorted(K8S.glob("*.yaml"))]:
        unknown = set(re.findall(r"LEADRELAY_[A-Z0-9_]+", path.read_text())) - known
        if unknown:
            fail(f"{path.relative_to(ROOT)} names variables the service does not read: {sorted(unknown)}")
    ok("compose, Dockerfile and Kubernetes files name only variables the service reads")


def unit_exec_start():
    m = re.search(r"^ExecStart=(\S+)(.*)$", UNIT.read_text(), re.M)
    return m.group(1), m.group(2).split()


def check_unit(binary, work):
    program, args = unit_exec_start()
    text = UNIT.read_text()
    text = text.replace(f"ExecStart={program}", f"ExecStart={binary}", 1)
    text = re.sub(r"^EnvironmentFile=.*$", f"EnvironmentFile={ENV_FILE}", text, flags=re.M)
    unit = work / "leadrelay.service"
    unit.write_text(text)
    verify = run(["systemd-analyze", "verify", str(unit)])
    said = (verify.stdout + verify.stderr).strip()
    if verify.returncode != 0 or said:
        fail(f"systemd-analyze verify {UNIT.relative_to(ROOT)} (exit {verify.returncode}):\n{said}")
    else:
        ok("systemd-analyze verify: clean")
    security = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
    if not m:
        fail(f"systemd-analyze security gave no exposure level:\n{security.stdout}{security.stderr}")
    elif float(m.group(1)) > MAX_EXPOSURE:
        fail(f"systemd-analyze security: exposure {m.group(1)} above {MAX_EXPOSURE}")
    else:
        ok(f"systemd-analyze security: exposure {m.group(1)} (at most {MAX_EXPOSURE})")
    return args


def starts_with(binary, what, env, args, work):
    """Starts `leadrelay ARGS` with ENV (pointed at nothing outside this machine) and
    waits until it says it is serving: every setting was accepted, the database migrated, the
    geographic data loaded and the HTTP port bound."""
    env = dict(env)
    # Nothing outside: no broker (the connection is retried in the background), a SQLite
    # file of its own, any free port.
    env.update(
        LEADRELAY_MQTT_URL="mqtt://127.0.0.1:1",
        LEADRELAY_DATABASE_URL=f"sqlite://{work}/{re.sub(r'[^a-z0-9]+', '-', what)}.db",
        LEADRELAY_HTTP_ADDR="127.0.0.1:0",
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
    )
    for key in ("LEADRELAY_MQTT_PASSWORD_FILE", "LEADRELAY_MQTT_CA_FILE", "LEADRELAY_CONFIG"):
        env.pop(key, None)
    log = work / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([binary, *args], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    started = False
    while time.monotonic() < deadline:
        if "leadrelay serving" in log.read_text():
            started = True
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if started:
        ok(f"leadrelay serve accepts the settings of {what}")
    else:
        fail(f"leadrelay serve refused the settings of {what}:\n{log.read_text()[-2000:]}")


def compose_file():
    return yaml.safe_load(COMPOSE.read_text())


def interpolated(value):
    """Compose's ${VAR:?message} and ${VAR:-default}, with a stand-in for required values."""
    return re.sub(
        r"\$\{([A-Z_]+)(?::([?-])([^}]*))?\}",
        lambda m: m.group(3) if m.group(2) == "-" else "stand-in",
        str(value),
    )


def check_settings_accepted(binary, exec_args, work):
    systemd_env = {k: v for k, v, active in env_file_lines(ENV_FILE) if active}
    starts_with(binary, "the systemd unit (ExecStart + leadrelay.env)", systemd_env, exec_args, work)

    docker_env = {}
    m = re.search(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE.read_text(), re.M)
    for pair in re.findall(r"([A-Z_]+)=(\S+)", m.group(1)):
        docker_env[pair[0]] = pair[1].replace("/usr/share/leadrelay/data", str(DEPLOY / "data"))
    starts_with(binary, "the image (Dockerfile ENV, data paths as in the repository)", docker_env, ["serve"], work)

    manifests = [doc for p in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text())]
    k8s_env = {}
    for doc in manifests:
        if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "leadrelay":
            k8s_env.update(doc["data"])
        if doc.get("kind") == "Secret" and doc["metadata"]["name"] == "leadrelay":
            k8s_env.update(doc["stringData"])
    k8s_env["LEADRELAY_CLIENT_ID"] = "leadrelay-0"
    starts_with(binary, "Kubernetes (ConfigMap + Secret)", k8s_env, ["serve"], work)

    services = compose_file()["services"]
    for name in ("leadrelay-1", "leadrelay-2"):
        env = {k: interpolated(v) for k, v in services[name]["environment"].items()}
        starts_with(binary, f"compose service {name}", env, ["serve"], work)


def check_compose_paths():
    base = COMPOSE.parent
    compose = compose_file()
    paths = []
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = base / build["context"]
            paths += [context, context / build["dockerfile"]]
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                paths.append(base / source)
    missing = [p.resolve() for p in paths if not p.exists()]
    for path in missing:
        fail(f"compose.yaml mounts or builds from {path}, which does not exist")
    ok(f"compose.yaml: {len(paths) - len(missing)} of {len(paths)} referenced paths exist")


def check_k8s(work):
    files = sorted(str(p) for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    rendered = work / "kustomized.yaml"
    kustomize = run(["kubectl", "kustomize", str(K8S)])
    if kustomize.returncode != 0:
        fail(f"kubectl kustomize {K8S.relative_to(ROOT)}:\n{kustomize.stderr}")
        return
    rendered.write_text(kustomize.stdout)
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    unlisted = {Path(f).name for f in files} - set(listed)
    if unlisted:
        fail(f"kustomization.yaml leaves out {sorted(unlisted)}")
    result = run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *files, str(rendered)]
    )
    said = (result.stdout + result.stderr).strip().splitlines()
    # A missing schema is only a warning for kubernetes-validate: allowed for the CRD kinds.
    unexpected = [
        line for line in said
        if not any(f"kind {kind} " in line and "Couldn't find schema" in line for kind in CRD_KINDS)
    ]
    if result.returncode != 0 or unexpected:
        fail("kubernetes-validate --strict:\n" + "\n".join(unexpected))
    else:
        count = sum(1 for doc in yaml.safe_load_all(kustomize.stdout) if doc)
        ok(
            f"Kubernetes: {len(files)} files and the kustomize output ({count} objects) validate "
            f"strictly ({', '.join(sorted(CRD_KINDS))} has no schema offline: parsed only)"
        )


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: deploy_check.py PATH/TO/leadrelay")
    binary = str(Path(sys.argv[1]).resolve())
    for tool in ("systemd-analyze", "kubectl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        check_parses()
        if failures:
            sys.exit("deploy files: a file does not parse; nothing else checked")
        known = known_env(binary)
        check_env_names(known)
        exec_args = check_unit(binary, work)
        check_settings_accepted(binary, exec_args, work)
        check_compose_paths()
        check_k8s(work)
    if failures:
        sys.exit(f"deploy files: {len(failures)} check(s) failed")
    print("deploy files: all checks passed")


if __name__ == "__main__":
    main()
