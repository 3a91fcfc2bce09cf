# Two commands: `make run` and `make test`. Both bootstrap what they need from the project's own files.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
DBT_ARGS := --project-dir dbt_project --profiles-dir dbt_project

# No network at run time: LiteLLM must use its bundled price map; uv must not fetch interpreters.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export UV_PYTHON_DOWNLOADS := never
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: run test bootstrap prepare browser lint fmt demo clean

run: prepare
	$(UV) run agentprovision demo --once
	$(UV) run agentprovision serve

test: prepare browser
	$(UV) run ruff check .
	$(UV) run pytest

demo: prepare
	$(UV) run agentprovision demo --once

lint: bootstrap
	$(UV) run ruff check .
	$(UV) run ruff format --check .

fmt: bootstrap
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

# uv itself comes from pip when it is missing; everything else from the committed lock file.
bootstrap:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user --quiet uv \
		|| $(PYTHON) -m pip install --user --quiet --break-system-packages uv
	$(UV) sync --frozen

# The dashboard screenshot tests drive Debian's Chromium (Playwright's own browser download needs
# the internet). Installed from the distribution's packages when missing and we may; the test says
# why it skipped otherwise, and fails instead when REQUIRE_BROWSER=1 (CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } ; } || \
		echo "chromium is not installed and could not be installed here; browser tests will skip"

# Dagster loads the dbt project from its manifest; outside `dagster dev` it must exist beforehand.
prepare: bootstrap
	$(UV) run dbt parse $(DBT_ARGS) --quiet

clean:
	rm -rf .state dbt_project/target dbt_project/logs
