# detection-operator — `make test` and `make demo` are the two commands; everything else is their parts.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
CONTROLPLANE_BIN := $(CACHE)/controlplane/bin
HELM_BIN := $(CACHE)/tools/bin/helm
KSTATUS_BIN := $(CACHE)/tools/bin/kstatus
VENV_STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEB_PACKAGES := prometheus prometheus-alertmanager lua5.1
# The local node: container runtime, image tools, CNI plugins, a base image from Debian, kube-proxy's iptables
# (and nfacct, to remove the netfilter counters kube-proxy leaves).
DEB_PACKAGES += containerd runc buildah umoci skopeo containernetworking-plugins debootstrap iptables nfacct
# The history store's tests and benchmarks: a real PostgreSQL server (Debian's), started on loopback by the test support.
DEB_PACKAGES += postgresql
PYTEST_ARGS ?=
# make demo DEMO_ARGS='--no-wait --state-dir DIR'
DEMO_ARGS ?=
# The TypeScript client: npm installs from the lock file into its node_modules, with npm's cache in .cache.
TS_DIR := clients/typescript
NPM_CACHE := $(abspath $(CACHE))/npm
TS_STAMP := $(TS_DIR)/node_modules/.installed-$(shell sha1sum $(TS_DIR)/package-lock.json | cut -c1-12)

export CONTROLPLANE_BIN := $(abspath $(CONTROLPLANE_BIN))
export HELM_BIN := $(abspath $(HELM_BIN))
export KSTATUS_BIN := $(abspath $(KSTATUS_BIN))

.PHONY: help test demo bench deps venv controlplane node helm kstatus crds check-crds lint unit integration reliability node-tests ts clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

test: deps venv controlplane node helm kstatus lint check-crds ts ## install everything needed, then lint and run every test
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: deps venv controlplane ts ## play the scenario on a local control plane + Prometheus + simulator + operator
	$(PY) -m detection_testing.demo $(DEMO_ARGS)

deps: ## Debian packages the tests use (Prometheus, Lua 5.1 for the Argo CD health check, containerd, buildah, ...)
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV_STAMP) $(VENV)/.testing-path ## virtualenv with the package, its test tools and the test support

# The test support and the demo (testing/detection_testing) are not in the wheel: the venv finds them by a .pth.
$(VENV)/.testing-path: $(VENV_STAMP)
	echo "$(abspath testing)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/detection-testing.pth"
	touch $@

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

ts: $(TS_STAMP) ## build the TypeScript client (clients/typescript) and run its tests (node --test)
	cd $(TS_DIR) && rm -rf dist && npm run --silent build && npm test --silent

$(TS_STAMP): $(TS_DIR)/package-lock.json
	@node -e 'process.exit(Number(process.versions.node.split(".")[0] < 20))' 2>/dev/null || \
	  { echo "the TypeScript client needs Node.js >= 20 and npm on PATH"; exit 1; }
	cd $(TS_DIR) && npm ci --cache $(NPM_CACHE) --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

controlplane: ## build etcd, kube-apiserver, kube-controller-manager, kubectl into .cache (once)
	CACHE=$(abspath $(CACHE))/controlplane hack/build-controlplane.sh

node: deps venv controlplane ## build kubelet, kube-scheduler, kube-proxy and the node's images into .cache (once)
	CACHE=$(abspath $(CACHE))/controlplane hack/build-controlplane.sh node
	$(PY) -m detection_testing.images build

helm: ## build the helm CLI into .cache (once), for the chart tests
	BIN=$(dir $(HELM_BIN)) hack/install-helm.sh

kstatus: ## build the kstatus checker (Flux's status library) into .cache (once), for the health tests
	BIN=$(dir $(KSTATUS_BIN)) hack/build-kstatus.sh

crds: venv ## regenerate crds/, the chart's copy, docs/schemas/, the Argo CD health files and the docs' field reference
	$(PY) -m detection_operator.api.generate

check-crds: venv
	$(PY) -m detection_operator.api.generate --check

lint: venv ## ruff, mypy and the import contracts (.importlinter)
	$(VENV)/bin/ruff check operator testing tests bench
	$(VENV)/bin/ruff format --check operator testing tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv ## only the unit tests (no control plane needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: deps venv controlplane node helm kstatus ts ## only the integration tests
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

node-tests: deps venv controlplane node helm ## only the tests that run Pods on a node (~5 min warm)
	$(PY) -m pytest tests -m node $(PYTEST_ARGS)

reliability: deps venv controlplane ## only the reliability suite (faults, fuzzing, churn; ~10 min)
	$(PY) -m pytest tests/reliability $(PYTEST_ARGS)

clean: ## remove the virtualenv and caches (the control-plane build cache too)
	rm -rf $(VENV) $(CACHE) .pytest_cache .mypy_cache .ruff_cache .hypothesis

bench: deps venv controlplane node ## run the benchmarks (one on the real node) and write bench/RESULTS.md
	$(PY) bench/run.py
