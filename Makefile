# The two set-up commands of the README: `make demo` and `make test`. Each builds the .venv
# from the pins in constraints.txt when it is missing or older than the pins.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo

.PHONY: demo test lint bench airflow-ui mlflow-ui lock clean-data java redis postgres stack stack-down stack-status stack-e2e chromium scheduler-check browser-test bench-dag-processor

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24,<27"
	# setuptools tells every editable install that local folders may shadow the package:
	# true of any editable install, and noise on a quiet one.
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

java:  # Spark 4 needs Java 17 or newer
	@command -v java >/dev/null || { \
	  echo "no java on PATH: installing openjdk-17-jre-headless (Debian)"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

redis:  # the feed store's Redis tests start their own redis-server on a free loopback port
	@command -v redis-server >/dev/null || { \
	  echo "no redis-server on PATH: installing redis-server (Debian)"; \
	  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

# Postgres for `make stack` (and its test): Debian's server, without the cluster its package
# would create and start on port 5432 (the stack runs initdb into its data root instead).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "no Postgres server: installing postgresql (Debian), without its main cluster"; \
	  mkdir -p /etc/postgresql-common \
	  && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
	  && apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }

# SCHEDULER=1: the calendar built by Airflow's scheduler instead of dag.test (jobs/demo_scheduler.py)
demo: $(VENV)/.installed java  ## the main job: the demo profile end to end
	$(BIN)/feedrank --profile $(PROFILE) demo $(if $(SCHEDULER),--scheduler)

# Two pytest workers (pytest-xdist): a test file runs on one worker, the files that start from
# the session's tiny days first (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed java redis postgres  ## lint, format check and the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

bench: $(VENV)/.installed java redis  ## benchmarks: print a table, write JSON under tests/benchmarks/results
	@# bench_dag_processor.py runs for 30 minutes: `make bench-dag-processor`
	@for b in tests/benchmarks/bench_*.py; do \
	  [ $$b = tests/benchmarks/bench_dag_processor.py ] || $(BIN)/python $$b || exit 1; done

# `feedrank airflow-ui` sets the profile, its data root and Airflow's settings (and fails on a
# data root of another profile), migrates the DB and runs what `airflow standalone` runs,
# minus the log servers, which would listen on every interface.
airflow-ui: $(VENV)/.installed java  ## Airflow UI on http://127.0.0.1:8080 (login: see the log line)
	# the components start as `airflow ...` from PATH: put the venv first.
	export PATH="$(CURDIR)/$(BIN):$$PATH" && feedrank --profile $(PROFILE) airflow-ui

# MLflow 3.17's UI opens experiments on its GenAI view unless asked for the training runs.
mlflow-ui: $(VENV)/.installed  ## MLflow UI on http://127.0.0.1:5000
	@echo "training runs: pick 'Model training' in the UI's sidebar switch (the browser keeps it)"
	exports="$$($(BIN)/feedrank --profile $(PROFILE) env)" && eval "$$exports" \
	  && $(BIN)/mlflow ui --backend-store-uri "$$MLFLOW_TRACKING_URI"

# The production-like stack on this machine, on 127.0.0.1 only (jobs/stack.py): Spark master
# + 2 workers, Postgres, the MLflow server, Airflow (LocalExecutor, DAGs unpaused), Redis.
stack: $(VENV)/.installed java redis postgres  ## start the stack; prints the exports for jobs
	export PATH="$(CURDIR)/$(BIN):$$PATH" && $(BIN)/feedrank --profile $(PROFILE) stack up

stack-status: $(VENV)/.installed
	$(BIN)/feedrank --profile $(PROFILE) stack status

stack-down: $(VENV)/.installed  ## stop every service of the stack
	$(BIN)/feedrank --profile $(PROFILE) stack down

# tiny from simulate to publish_feeds driven by the stack's scheduler, compared with the
# embedded run (tests/stack/e2e.py); minutes on 2 cores, so not part of `make test`.
stack-e2e: $(VENV)/.installed java redis postgres
	export PATH="$(CURDIR)/$(BIN):$$PATH" && $(BIN)/python tests/stack/e2e.py

# tiny's calendar walked by Airflow's scheduler (`feedrank demo --scheduler`) and by dag.test
# (`feedrank demo`), each into its own root under SCHEDULER_BASE, then their warehouse, MLflow
# runs, registry and feed store compared (tests/stack/scheduler_equality.py). About an hour on
# 2 cores: not part of `make test`.
SCHEDULER_BASE ?= $(CURDIR)/.feedrank-scheduler-check
scheduler-check: $(VENV)/.installed java
	rm -rf $(SCHEDULER_BASE)/scheduler $(SCHEDULER_BASE)/dagtest
	FEEDRANK_HOME=$(SCHEDULER_BASE)/scheduler $(BIN)/feedrank --profile tiny demo --scheduler
	FEEDRANK_HOME=$(SCHEDULER_BASE)/dagtest $(BIN)/feedrank --profile tiny demo
	$(BIN)/python tests/stack/scheduler_equality.py --scheduler $(SCHEDULER_BASE)/scheduler \
	  --dagtest $(SCHEDULER_BASE)/dagtest --json $(SCHEDULER_BASE)/equality.json

chromium:  # the browser test drives Debian's chromium (Playwright's own download is not used)
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Playwright + chromium on the UIs of a root the scheduler walked (`make scheduler-check` first,
# or BROWSER_ROOT=a root of `feedrank demo --scheduler`): Airflow, MLflow, `feedrank serve`
# (tests/browser/test_ui.py); screenshots under BROWSER_SHOTS. Deselected from `make test`.
BROWSER_ROOT ?= $(SCHEDULER_BASE)/scheduler
BROWSER_SHOTS ?= $(BROWSER_ROOT)/screenshots
browser-test: $(VENV)/.installed java chromium
	BROWSER_TEST_ROOT=$(BROWSER_ROOT) BROWSER_TEST_SHOTS=$(BROWSER_SHOTS) \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -m browser tests/browser -p no:cacheprovider

# The dag-processor under a CPU-bound neighbour on every core for LOAD_MINUTES (default 30):
# no DAG killed or deactivated (tests/benchmarks/bench_dag_processor.py).
LOAD_MINUTES ?= 30
bench-dag-processor: $(VENV)/.installed java
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tests/benchmarks/bench_dag_processor.py \
	  --minutes $(LOAD_MINUTES)

lock:  ## re-resolve the pins from setup.cfg's ranges
	rm -rf /tmp/feedrank-lock && $(PYTHON) -m venv /tmp/feedrank-lock
	/tmp/feedrank-lock/bin/pip install --quiet -e ".[dev]"
	( echo '# Exact versions the .venv is built from (pip install -c constraints.txt -e ".[dev]").'; \
	  echo '# Regenerate after changing setup.cfg: make lock'; \
	  /tmp/feedrank-lock/bin/pip freeze --exclude-editable | grep -vE '^(pip|setuptools|wheel)==' ) > constraints.txt

clean-data:  ## delete the local data root (warehouse, Airflow and MLflow state)
	rm -rf .feedrank
