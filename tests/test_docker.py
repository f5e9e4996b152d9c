"""docker/ checked statically (no Docker engine here): the compose file parses and describes
the same services and settings as `feedrank stack` (jobs/stack.py), each service's command
exists in the image, every variable the code and the services read is documented in
docker/.env.example, no secret is committed, and every image is pinned to a version."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from jobs.settings import _ENV_SHORTCUTS, load_settings
from jobs.stack import Stack, StackSettings
from warehouse.layout import DataRoot, executable

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|CURSOR_KEY", re.I)


def _example() -> dict[str, str]:
    """docker/.env.example's variables, set or commented out (`# NAME=value`)."""
    out = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            out[match[1]] = match[2].split("  (")[0].strip()
    return out


EXAMPLE = _example()


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def test_compose_has_the_stack_services():
    stack = Stack(DataRoot(Path("/data")), StackSettings(), "demo")
    names = {s.name for s in stack.services()}
    assert names <= set(SERVICES), sorted(names - set(SERVICES))
    assert set(SERVICES) - names == {"airflow-init"}  # compose's one-off `airflow db migrate`


def test_compose_settings_match_the_stack():
    """The jobs' variables are the ones the stack exports, on the stack's default ports."""
    cfg = StackSettings()
    jobs_env = _environment(SERVICES["airflow-scheduler"])
    stack_env = Stack(DataRoot(Path("/data")), cfg, "demo").client_env()
    wanted = {k for k in stack_env if k.startswith("FEEDRANK__")}
    assert wanted <= set(jobs_env)
    assert jobs_env["FEEDRANK__SPARK__MASTER"] == f"spark://spark-master:{cfg.spark_master_port}"
    assert jobs_env["FEEDRANK__MLFLOW__TRACKING_URI"] == f"http://mlflow:{cfg.mlflow_port}"
    assert jobs_env["FEEDRANK__FEEDS__STORE_URL"] == f"redis://redis:{cfg.redis_port}/0"
    assert jobs_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    workers = [n for n in SERVICES if n.startswith("spark-worker-")]
    assert len(workers) == cfg.spark_workers
    for name in workers:
        command = SERVICES[name]["command"]
        assert command[command.index("--cores") + 1] == str(cfg.worker_cores)
        assert command[command.index("--memory") + 1] == cfg.worker_memory
    redis = SERVICES["redis"]["command"]
    assert redis[redis.index("--maxmemory-policy") + 1] == "volatile-lru"


def test_every_command_exists_in_the_image():
    """The feedrank image installs this venv's pins: its console scripts, Airflow's and
    MLflow's subcommands, and Spark's daemon classes in pyspark's jars."""
    # Read from the installed sources, not imported: importing Airflow's CLI and MLflow's
    # costs tens of seconds on a busy machine.
    airflow_cli = _source("airflow", "cli/cli_config.py")
    airflow_commands = set(re.findall(r'(?:Action|Group)Command\(\s*name="([a-z-]+)"', airflow_cli))
    assert {"scheduler", "db", "dags"} <= airflow_commands  # the reading finds them
    chunks = _source("mlflow", "cli/__init__.py").split("@cli.command(")[1:]
    mlflow_commands = {re.search(r"^def ([a-z_]+)\(", c, re.M)[1] for c in chunks}
    assert {"run", "gc"} <= mlflow_commands  # the reading finds them
    jars = Path(importlib.util.find_spec("pyspark").origin).parent / "jars"
    classes = set()
    for jar in jars.glob("spark-core_*.jar"):
        classes |= set(zipfile.ZipFile(jar).namelist())
    for name, service in SERVICES.items():
        command = service.get("command")
        if service.get("image", "").startswith("feedrank:"):
            assert command, f"{name} has no command"
            assert executable(command[0]).exists(), f"{name}: {command[0]} not installed"
            if command[0] == "airflow":
                assert command[1] in airflow_commands, name
            if command[0] == "mlflow":
                assert command[1] in mlflow_commands, name
            if command[0] == "spark-class":
                assert command[1].replace(".", "/") + ".class" in classes, name
        elif command:  # an upstream image (redis): its server binary
            assert command[0] == "redis-server", name


def test_images_are_pinned():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    images = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    images += [s["image"] for s in SERVICES.values() if "image" in s]
    assert images
    for image in images:
        tag = image.partition(":")[2]
        assert re.match(r"^\d+\.\d+", tag), f"{image}: pin a version (x.y...), not {tag!r}"
    version = re.search(r"^version = (\S+)", (ROOT / "setup.cfg").read_text(), re.M)[1]
    assert SERVICES["spark-master"]["image"] == f"feedrank:{version}"
    # Python packages: from the pins only, nothing installed beside them.
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs and all("-c constraints.txt" in line for line in installs), installs


def _source(package: str, name: str) -> str:
    return (Path(importlib.util.find_spec(package).origin).parent / name).read_text()


def _values(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _values(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _values(value, (*path, str(i)))
    else:
        yield path, str(node)


def test_no_secret_is_committed():
    for path, value in _values(COMPOSE):
        key = path[-1]
        credentials = re.search(r"://[^:/@\s]+:([^@\s]+)@", value)
        if credentials:  # a URL's password: a reference to the .env file, never a value
            assert credentials[1].startswith("${"), f"{'.'.join(path)} holds a password"
        if SECRET_NAME.search(key):
            assert value.startswith("${"), f"{'.'.join(path)} holds a secret"
    for name, value in EXAMPLE.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example gives {name} a value"
    tracked = subprocess.run(
        ["git", "ls-files", "docker"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "docker/.env" not in tracked
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "docker/.env must be git-ignored"


def _read_env_names() -> set[str]:
    """Variable names the code reads: string constants in os.environ[...] / .get(...) /
    os.getenv(...) and env.get(...) calls, under the packages and dags/."""
    names = set()
    for package in ("jobs", "features", "models", "warehouse", "simulator", "dags"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                arg = None
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = ast.unparse(node.func.value)
                    if node.func.attr in ("get", "getenv") and owner.endswith(
                        ("environ", "os", "env")
                    ):
                        arg = node.args[0] if node.args else None
                elif (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.ctx, ast.Load)
                    and ast.unparse(node.value).endswith("environ")
                ):
                    arg = node.slice
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
    return names


def test_every_variable_read_is_documented():
    read = _read_env_names()
    assert "FEEDRANK_PROFILE" in read  # the walk finds the settings loader's read
    compose_env = set()
    for service in SERVICES.values():
        compose_env |= {k for k in _environment(service) if not k.startswith("POSTGRES_")}
    shortcuts = set(_ENV_SHORTCUTS)
    missing = (read | compose_env | shortcuts) - set(EXAMPLE) - {"PATH"}
    assert not missing, f"document in docker/.env.example: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(n for n in EXAMPLE if n.startswith("FEEDRANK__")))
def test_documented_settings_exist(name):
    """Every FEEDRANK__ variable in the example is a field of the settings (a typo fails)."""
    value = EXAMPLE[name] or "1"
    if name.endswith("CURSOR_KEY"):
        value = "x" * 16
    environ = {"FEEDRANK_HOME": "/tmp/feedrank-docker-check", name: value}
    load_settings("tiny", environ=environ)
