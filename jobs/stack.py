"""The production-like stack on one machine (`feedrank stack up|down|status|env`): the same
services as docker/compose.yaml, as real processes listening on `stack.host` (loopback) only,
their state and logs under the data root (`<home>/stack/`):

    spark-master, spark-worker-N   Spark standalone (pip's pyspark: bin/spark-class)
    postgres                       Airflow's metadata DB and MLflow's backend store
    mlflow                         `mlflow server` on Postgres, artifacts under the data root
    airflow-api, airflow-scheduler, airflow-dag-processor
                                   Airflow 3, LocalExecutor on Postgres, the DAGs unpaused
    redis                          the feed store (maxmemory-policy volatile-lru)

Jobs reach them through the environment `env_exports` prints (FEEDRANK__SPARK__MASTER,
FEEDRANK__MLFLOW__TRACKING_URI, FEEDRANK__FEEDS__STORE_URL, ...); the Airflow services get
the same, so that every task's Spark job runs on the cluster. Nothing here imports
jobs.settings: the command line hands in the data root, the `stack` section and the profile.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from jobs.airflow_env import airflow_environ
from jobs.processes import (
    Running,
    StackError,
    port_taken,
    read_pid_file,
    start,
    stop,
    wait_until,
)
from warehouse.layout import DataRoot, executable

GROUPS = ("postgres", "redis", "spark", "mlflow", "airflow")
NEEDS = {"mlflow": ("postgres",), "airflow": ("postgres",)}  # what a group cannot run without
DATABASES = ("airflow", "mlflow")  # one Postgres database each
# Start order: a wave's services start together once the waves before them answer.
WAVES = {
    "postgres": 0,
    "redis": 0,
    "spark-master": 0,
    "spark-worker": 1,
    "mlflow": 1,
    "airflow-api": 2,
    "airflow-scheduler": 2,
    "airflow-dag-processor": 2,
}


class StackSettings(BaseModel):
    """Where the local stack's services listen and how big the Spark cluster is (`stack`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"  # every service listens on this address only
    spark_master_port: int = Field(7077, ge=1, le=65535)  # spark://host:port
    spark_ui_port: int = Field(8090, ge=1, le=65535)  # the master's web UI (and its JSON)
    spark_workers: int = Field(2, ge=1, le=16)  # standalone workers on this machine
    spark_worker_port: int = Field(7078, ge=1, le=65535)  # worker i listens on this + i
    worker_cores: int = Field(1, ge=1)  # cores each worker offers
    # memory each worker offers: at least spark.executor.memory (Spark's default 1g), or no
    # executor ever starts there and jobs wait for resources forever
    worker_memory: str = "1g"
    daemon_memory: str = "256m"  # heap of the master and worker daemons themselves
    postgres_port: int = Field(5432, ge=1, le=65535)
    postgres_user: str = "feedrank"  # owner of the airflow and mlflow databases
    mlflow_port: int = Field(5000, ge=1, le=65535)
    airflow_port: int = Field(8080, ge=1, le=65535)  # api-server: UI, REST and execution API
    airflow_parallelism: int = Field(2, ge=1)  # task slots of the LocalExecutor
    dags_unpaused: bool = True  # new DAGs start unpaused: the calendar runs by itself
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_maxmemory: str = "1gb"
    health_timeout_s: int = Field(300, ge=5)  # how long `up` waits for each service


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    group: str
    port: int | None
    argv: list[str]
    env: dict[str, str]
    healthy: Callable[[], bool]
    port_setting: str | None = None  # the `stack` field that moves it, for the error
    user: str | None = None  # run as this user (Postgres refuses root)
    stop_signal: int = signal.SIGTERM


class Stack:
    """The services of one data root's stack."""

    def __init__(self, root: DataRoot, cfg: StackSettings, profile: str) -> None:
        self.root, self.cfg, self.profile = root, cfg, profile
        self.folder = root.stack

    # --- where things are --------------------------------------------------------------
    def pid_file(self, name: str) -> Path:
        return self.folder.file(f"run/{name}.pid")

    def log_file(self, name: str) -> Path:
        return self.folder.file(f"logs/{name}.log")

    @property
    def spark_url(self) -> str:
        return f"spark://{self.cfg.host}:{self.cfg.spark_master_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.mlflow_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.cfg.host}:{self.cfg.redis_port}/0"

    def password(self) -> str:
        """Postgres's password: the data root's own secret, generated at first use."""
        return self.root.secret("postgres").decode()

    def db_url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        c = self.cfg
        return (
            f"{driver}://{c.postgres_user}:{self.password()}@{c.host}:{c.postgres_port}/{database}"
        )

    # --- the services ------------------------------------------------------------------
    def services(self, groups: tuple[str, ...] = GROUPS) -> list[Service]:
        """The services of `groups` (and of the groups they need), in start order."""
        wanted = set(groups) | {n for g in groups for n in NEEDS.get(g, ())}
        build = {
            "postgres": self._postgres,
            "redis": self._redis,
            "spark": self._spark,
            "mlflow": self._mlflow,
            "airflow": lambda: self._airflow(tuple(g for g in GROUPS if g in wanted)),
        }
        return [s for g in GROUPS if g in wanted for s in build[g]()]

    def _postgres(self) -> list[Service]:
        c = self.cfg
        argv = [str(_postgres_binary("postgres")), "-D", str(self.folder.file("postgres/data"))]
        argv += ["-p", str(c.postgres_port), "-c", f"listen_addresses={c.host}"]
        argv += ["-c", "unix_socket_directories="]  # TCP on loopback only: no socket file
        return [
            Service(
                "postgres",
                "postgres",
                c.postgres_port,
                argv,
                _base_env(),
                lambda: self._query("postgres", "select 1") is not None,
                "postgres_port",
                user=_postgres_user(),
                stop_signal=signal.SIGINT,  # "fast" shutdown: it does not wait for clients
            )
        ]

    def _redis(self) -> list[Service]:
        import redis

        c = self.cfg
        argv = [shutil.which("redis-server") or "redis-server", "--bind", c.host]
        argv += [
            "--port",
            str(c.redis_port),
            "--dir",
            str(self.folder.writable("redis/.keep").parent),
        ]
        argv += ["--appendonly", "yes", "--save", "", "--maxmemory", c.redis_maxmemory]
        # Evict feeds (they carry a TTL), never the store's pointers: the store refuses allkeys-*.
        argv += ["--maxmemory-policy", "volatile-lru"]
        client = redis.Redis.from_url(self.redis_url, socket_timeout=3)
        return [
            Service("redis", "redis", c.redis_port, argv, _base_env(), client.ping, "redis_port")
        ]

    def _spark(self) -> list[Service]:
        c = self.cfg
        spark_class = str(
            Path(importlib.util.find_spec("pyspark").origin).parent / "bin/spark-class"
        )
        env = {
            **_base_env(),
            "SPARK_LOCAL_IP": c.host,  # RPC and web UIs bind here, not on every interface
            "SPARK_DAEMON_MEMORY": c.daemon_memory,
            "PYSPARK_PYTHON": sys.executable,  # executors' Python: this environment's
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",  # no REST port (6066)
        }
        master = [spark_class, "org.apache.spark.deploy.master.Master", "--host", c.host]
        master += ["--port", str(c.spark_master_port), "--webui-port", str(c.spark_ui_port)]
        out = [
            Service(
                "spark-master",
                "spark",
                c.spark_master_port,
                master,
                env,
                lambda: self._spark_json()["status"] == "ALIVE",
                "spark_master_port",
            )
        ]
        for i in range(c.spark_workers):
            port = c.spark_worker_port + i
            worker = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", c.host]
            worker += ["--port", str(port), "--webui-port", "0", "--cores", str(c.worker_cores)]
            worker += ["--memory", c.worker_memory]
            worker += [
                "--work-dir",
                str(self.folder.writable(f"spark/worker-{i + 1}/.keep").parent),
            ]
            out.append(
                Service(
                    f"spark-worker-{i + 1}",
                    "spark",
                    port,
                    [*worker, self.spark_url],
                    env,
                    lambda port=port: self._worker_alive(port),
                    "spark_worker_port",
                )
            )
        return out

    def _mlflow(self) -> list[Service]:
        c = self.cfg
        argv = [str(executable("mlflow")), "server", "--host", c.host, "--port", str(c.mlflow_port)]
        argv += ["--workers", "1", "--artifacts-destination", str(self.root.mlflow_artifacts)]
        # The backend URI holds the password: the environment, not the command line (ps).
        env = {**_base_env(), "MLFLOW_BACKEND_STORE_URI": self.db_url("mlflow")}
        return [
            Service(
                "mlflow",
                "mlflow",
                c.mlflow_port,
                argv,
                env,
                lambda: _http(f"{self.mlflow_url}/health").strip() == "OK",
                "mlflow_port",
            )
        ]

    def _airflow(self, groups: tuple[str, ...]) -> list[Service]:
        c, airflow = self.cfg, str(executable("airflow"))
        env = {**_base_env(), **self.airflow_env(groups)}
        parts = [
            ("airflow-api", ["api-server", "--host", c.host, "--port", str(c.airflow_port)], "api"),
            # LocalExecutor's log server would listen on every interface; the api-server reads
            # the task logs from their files on this machine.
            ("airflow-scheduler", ["scheduler", "--skip-serve-logs"], "scheduler"),
            ("airflow-dag-processor", ["dag-processor"], "dag_processor"),
        ]
        return [
            Service(
                name,
                "airflow",
                c.airflow_port if part == "api" else None,
                [airflow, *args],
                env,
                lambda part=part: self._airflow_healthy(part),
                "airflow_port" if part == "api" else None,
            )
            for name, args, part in parts
        ]

    # --- environments ------------------------------------------------------------------
    def client_env(self, groups: tuple[str, ...] = GROUPS) -> dict[str, str]:
        """What a job (or an Airflow task) needs to use the stack's `groups`."""
        env = {"FEEDRANK_PROFILE": self.profile, "FEEDRANK_HOME": str(self.root.home)}
        if "spark" in groups:
            env["FEEDRANK__SPARK__MASTER"] = self.spark_url
            env["SPARK_LOCAL_IP"] = self.cfg.host  # the driver, which executors call back
        if "mlflow" in groups:
            env["FEEDRANK__MLFLOW__TRACKING_URI"] = self.mlflow_url
            env["MLFLOW_TRACKING_URI"] = self.mlflow_url
        if "redis" in groups:
            env["FEEDRANK__FEEDS__STORE_URL"] = self.redis_url
        return env

    def task_spark_conf(self) -> dict[str, str]:
        """The Spark settings of the scheduler's tasks: the user's (FEEDRANK__SPARK__CONF),
        and unless it says otherwise `spark.cores.max`, the cluster's cores over the task
        slots. A standalone application takes every free core otherwise, and a task whose
        Spark job starts while another runs waits for it: on tiny, each day's raw contracts
        waited for the day before's build_features, and the walk took 1,041 s instead of 761."""
        c = self.cfg
        conf = json.loads(os.environ.get("FEEDRANK__SPARK__CONF") or "{}")
        cores = max(1, c.spark_workers * c.worker_cores // c.airflow_parallelism)
        return {"spark.cores.max": str(cores), **conf}

    def airflow_env(self, groups: tuple[str, ...] = GROUPS) -> dict[str, str]:
        """Airflow on Postgres with the LocalExecutor, its tasks pointed at the stack's other
        `groups` (their Spark jobs on the cluster, runs on the MLflow server, feeds to Redis)."""
        c = self.cfg
        env = airflow_environ(self.root, c.host)
        env.update(self.client_env(groups))
        if "spark" in groups:
            env["FEEDRANK__SPARK__CONF"] = json.dumps(self.task_spark_conf())
        env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url("airflow"),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(c.airflow_parallelism),
                "AIRFLOW__API__PORT": str(c.airflow_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                    f"http://{c.host}:{c.airflow_port}/execution/"
                ),
                "AIRFLOW__API_AUTH__JWT_SECRET": self.root.secret("airflow_jwt").decode(),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not c.dags_unpaused),
            }
        )
        return env

    # --- health ------------------------------------------------------------------------
    def _query(self, database: str, sql: str):
        import psycopg2

        c = self.cfg
        conn = psycopg2.connect(
            host=c.host,
            port=c.postgres_port,
            user=c.postgres_user,
            password=self.password(),
            dbname=database,
            connect_timeout=3,
        )
        try:
            conn.autocommit = True  # CREATE DATABASE refuses a transaction
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def _spark_json(self) -> dict:
        return json.loads(_http(f"http://{self.cfg.host}:{self.cfg.spark_ui_port}/json/"))

    def _worker_alive(self, port: int) -> bool:
        workers = self._spark_json()["workers"]
        return any(w["port"] == port and w["state"] == "ALIVE" for w in workers)

    def _airflow_healthy(self, part: str) -> bool:
        health = json.loads(
            _http(f"http://{self.cfg.host}:{self.cfg.airflow_port}/api/v2/monitor/health")
        )
        if part == "api":
            return health["metadatabase"]["status"] == "healthy"
        return health[part]["status"] == "healthy"

    # --- one-off steps -----------------------------------------------------------------
    def init_postgres(self) -> None:
        """initdb once: the stack's user with the root's password, scram auth."""
        data = self.folder.file("postgres/data")
        if (data / "PG_VERSION").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        user = _postgres_user()
        pwfile = self.folder.file("postgres/.pwfile")
        pwfile.write_text(self.password() + "\n")
        pwfile.chmod(0o600)
        if user:
            for path in (data.parent, data, pwfile):
                shutil.chown(path, user, user)
            _check_reachable(data, user)
        argv = [str(_postgres_binary("initdb")), "-D", str(data), "-U", self.cfg.postgres_user]
        argv += ["-A", "scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C"]
        try:
            self._run_step("postgres-initdb", argv, _base_env(), user=user)
        finally:
            pwfile.unlink(missing_ok=True)

    def create_databases(self) -> None:
        have = {row[0] for row in self._query("postgres", "select datname from pg_database")}
        for name in DATABASES:
            if name not in have:
                self._query("postgres", f'create database "{name}"')

    def migrate_airflow(self) -> None:
        env = {**_base_env(), **self.airflow_env()}
        self._run_step("airflow-migrate", [str(executable("airflow")), "db", "migrate"], env)

    def _run_step(self, name: str, argv: list[str], env: dict, user: str | None = None) -> None:
        log = self.log_file(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        extra = {"user": user, "group": user, "extra_groups": []} if user else {}
        with log.open("ab") as out:
            done = subprocess.run(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=self.cfg.health_timeout_s,
                **extra,
            )
        if done.returncode:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"{name} failed (exit {done.returncode}); the end of {log}:\n{tail}")

    # --- up, down, status --------------------------------------------------------------
    def running(self) -> dict[str, Running]:
        """The services with a pid file, alive or not, by name."""
        out = {}
        for path in sorted(self.folder.file("run").glob("*.pid")):
            if (found := read_pid_file(path)) is not None:
                out[found.service] = found
        return out

    def up(self, groups: tuple[str, ...] = GROUPS, echo: Callable[[str], None] = print) -> None:
        """Start the services of `groups` that are not running, each waited on until it
        answers; on any failure, stop what this call started and raise StackError."""
        services = self.services(groups)
        already = {n for n, r in self.running().items() if r.alive}
        todo = [s for s in services if s.name not in already]
        taken = [s for s in todo if s.port is not None and port_taken(self.cfg.host, s.port)]
        if taken:
            raise StackError(
                "; ".join(
                    f"{s.name}: port {s.port} on {self.cfg.host} is taken by another process"
                    f" (set FEEDRANK__STACK__{(s.port_setting or '').upper()} to move it)"
                    for s in taken
                )
            )
        self.root.ensure()
        started: list[Running] = []
        began = time.monotonic()
        try:
            # A wave starts together and is waited on before the next: what needs Postgres or
            # the master starts once they answer, the rest of a wave starts side by side.
            for wave in sorted({WAVES[s.name.rstrip("-0123456789")] for s in todo}):
                batch = [s for s in todo if WAVES[s.name.rstrip("-0123456789")] == wave]
                if any(s.group == "postgres" for s in batch):
                    self.init_postgres()
                if any(NEEDS.get(s.group) == ("postgres",) for s in batch):
                    self.create_databases()  # idempotent: Postgres may have been up before
                if any(s.group == "airflow" for s in batch):
                    self.migrate_airflow()
                runs = []
                for service in batch:
                    runs.append(self._start_one(service))
                    started.append(runs[-1])
                for service, running in zip(batch, runs, strict=True):
                    what = f"{service.name} (port {service.port})" if service.port else service.name
                    wait_until(running, service.healthy, self.cfg.health_timeout_s, what)
                    port = service.port or "-"
                    echo(
                        f"  {service.name:<24} up   pid {running.pid:<8} port {port:<6} "
                        f"after {time.monotonic() - began:.0f} s"
                    )
        except BaseException:
            for running in reversed(started):
                self._stop_one(running, {s.name: s for s in services})
            raise

    def _start_one(self, service: Service) -> Running:
        return start(
            service.name,
            service.argv,
            env=service.env,
            log=self.log_file(service.name),
            pid_file=self.pid_file(service.name),
            port=service.port,
            user=service.user,
        )

    def down(
        self, groups: tuple[str, ...] = GROUPS, echo: Callable[[str], None] = print
    ) -> list[str]:
        """Stop the services of `groups` (default: every one with a pid file), last started
        first; returns their names."""
        services = {s.name: s for s in self.services()}
        found = self.running()
        if set(groups) != set(GROUPS):
            found = {
                n: r for n, r in found.items() if n in services and services[n].group in groups
            }
        order = [s for s in services if s in found] + [n for n in found if n not in services]
        for name in reversed(order):
            self._stop_one(found[name], services)
            echo(f"  {name:<24} stopped")
        return list(reversed(order))

    def _stop_one(self, running: Running, services: dict[str, Service]) -> None:
        service = services.get(running.service)
        stop(running, service.stop_signal if service else signal.SIGTERM)
        self.pid_file(running.service).unlink(missing_ok=True)

    def status(self) -> list[dict]:
        """One row per service of the stack: pid, port, alive, healthy (asked once)."""
        found = self.running()
        rows = []
        for service in self.services():
            running = found.get(service.name)
            alive = bool(running and running.alive)
            try:
                healthy = alive and bool(service.healthy())
            except Exception:
                healthy = False
            rows.append(
                {
                    "service": service.name,
                    "pid": running.pid if alive else None,
                    "port": service.port,
                    "alive": alive,
                    "healthy": healthy,
                }
            )
        return rows

    def env_exports(self, groups: tuple[str, ...] = GROUPS) -> str:
        """`export` lines for a shell whose jobs use the stack: the password is read from
        its file by the shell when the lines are evaluated, never printed."""
        lines = [f"export {k}={_quote(v)}" for k, v in self.client_env(groups).items()]
        if "airflow" in groups:
            c, secret = self.cfg, self.root.secrets / "postgres"
            conn = (
                f"postgresql+psycopg2://{c.postgres_user}:$(cat {_quote(str(secret))})"
                f"@{c.host}:{c.postgres_port}/airflow"
            )
            lines += [
                f"export AIRFLOW_HOME={_quote(str(self.root.airflow_home))}",
                f"export AIRFLOW__CORE__DAGS_FOLDER={_quote(str(self.root.dags_folder()))}",
                f'export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="{conn}"',
                "export AIRFLOW__CORE__EXECUTOR=LocalExecutor",
            ]
        return "\n".join(lines)


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as answer:
        return answer.read().decode()


def _base_env() -> dict[str, str]:
    """The environment every service starts from: ours, with the venv's scripts first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _postgres_user() -> str | None:
    """Postgres refuses to run as root: as root, its processes run as the `postgres` user."""
    return "postgres" if os.geteuid() == 0 else None


def _postgres_binary(name: str) -> Path:
    """`initdb` or `postgres`: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parts)
    if not versions:
        raise StackError(f"no {name} found: `make postgres` installs Debian's postgresql")
    return versions[-1]


def _check_reachable(path: Path, user: str) -> None:
    """As root, Postgres runs as `user`, who must be able to enter every folder above its
    data; say which folder stops it instead of initdb's 'permission denied'."""
    for parent in reversed(path.parents):
        if parent.stat().st_mode & 0o001 == 0 and parent.owner() != user:
            raise StackError(
                f"postgres runs as user {user!r}, who cannot enter {parent} (mode "
                f"{parent.stat().st_mode & 0o777:o}): `chmod o+x {parent}`, or use a data root "
                "that user can reach"
            )
