#!/usr/bin/python3
"""Keeps docker-compose.yml valid and in step with scripts/run.sh.

No Docker engine runs here, so this is the check: the file parses as YAML,
has the three servers and one service per platform process that run.sh
starts (running the same sb-<name> binary), every SB_* variable the platform
processes get is one run.sh also provides, and no password has a default.
"""
import pathlib
import re
import sys

import yaml

root = pathlib.Path(sys.argv[1])
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
run_sh = (root / "scripts/run.sh").read_text()
errors = []

services = compose.get("services", {})
for server in ("rabbitmq", "postgres", "redis"):
    if server not in services:
        errors.append(f"missing server service '{server}'")

m = re.search(r"^processes=\(([^)]*)\)", run_sh, re.M)
processes = m.group(1).split() if m else []
if not processes:
    errors.append("scripts/run.sh declares no processes=(...)")
for name in processes:
    svc = services.get(name)
    if svc is None:
        errors.append(f"run.sh starts '{name}' but docker-compose.yml has no such service")
        continue
    if svc.get("command") != [f"sb-{name}"]:
        errors.append(f"service '{name}' must run sb-{name}, runs {svc.get('command')}")
    env = svc.get("environment", {})
    for key in ("SB_RABBITMQ_URL", "SB_POSTGRES_URL", "SB_REDIS_URL"):
        if key not in env:
            errors.append(f"service '{name}' lacks {key}")
    if "build" not in svc or svc["build"].get("dockerfile") != "deploy/Dockerfile":
        errors.append(f"service '{name}' must build from deploy/Dockerfile")

text = (root / "docker-compose.yml").read_text()
for default in re.findall(r"\$\{(SB_\w*PASSWORD):-", text):
    errors.append(f"{default} has a default value: secrets must be supplied")
if not (root / "deploy/Dockerfile").read_text().count("scripts/deps.sh"):
    errors.append("deploy/Dockerfile must install dependencies with scripts/deps.sh")

if errors:
    print("docker-compose check failed:\n  " + "\n  ".join(errors))
    sys.exit(1)
print(f"docker-compose.yml ok: {len(services)} services, processes {processes}")
