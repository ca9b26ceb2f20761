# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint protos monitoring bench status-page-screenshot clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m simulator.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/render_metrics.py
	$(PY) bench/fleet.py
	$(PY) bench/probe_json.py
	$(PY) bench/scaler_getmetrics.py
	$(PY) bench/scaler_push.py
	$(PY) bench/scale_out.py
	$(PY) bench/whatif_speed.py
	$(PY) bench/whatif_calibration.py

# Regenerate docs/status-page.png (README, docs/scaler.md): the browser test, letting the sparklines fill for a
# minute first (STATUS_PAGE_SETTLE seconds); needs Debian's chromium and chromium-driver.
status-page-screenshot: $(STAMP)
	STATUS_PAGE_SCREENSHOT=docs/status-page.png $(PY) -m pytest -q -p no:cacheprovider tests/test_status_page_browser.py

# Regenerate the committed gRPC code; tests/test_scaler_protos.py (test_regenerating_changes_nothing) fails
# when this would change it.
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iexternal_scaler/_proto=protos --python_out=. --grpc_python_out=. \
		--pyi_out=. protos/externalscaler.proto

# Regenerate deploy/monitoring's dashboard JSON and PrometheusRule; tests/test_monitoring.py fails when this would
# change either (edit dashboard.py and rules.yml, not what they generate).
monitoring: $(STAMP)
	$(PY) deploy/monitoring/dashboard.py
	$(PY) deploy/monitoring/prometheusrule.py

clean:
	rm -rf $(VENV) build *.egg-info
