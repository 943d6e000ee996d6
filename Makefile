# multinet developer entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/hack
export MULTINET_CACHE ?= $(HOME)/.cache/multinet
# The image the manifests in deploy/base name (a test keeps them equal).
IMAGE ?= ghcr.io/multinet-dev/multinet:0.1.0
KIND_CLUSTER ?= multinet
# Local cluster size: 1 (this machine is the node; multinet as host processes) or 2-9 sandbox
# nodes running multinet's image as deploy/base's pods.
NODES ?= 1
# Another Kubernetes release than hack/k8s/versions.env's default (built once, cached per version).
ifdef K8S_VERSION
export K8S_VERSION
endif
KUBECTL ?= kubectl

.PHONY: help deps venv lint typecheck test test-matrix unit demo cluster-up cluster-down node-nic binaries proto bench bench-dranet bench-scale chaos build clean
.PHONY: image image-docker kind-up kind-load deploy kind-demo

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

deps: ## install the Debian packages the cluster and tests need (root; fast when present)
	hack/install-deps.sh

venv: $(VENV)/.installed ## create .venv with the pinned dependencies

binaries: deps ## build or reuse the cached Kubernetes, etcd and containerd binaries
	hack/build-binaries.sh

lint: venv ## ruff lint and format check
	$(VENV)/bin/ruff check src tests hack bench
	$(VENV)/bin/ruff format --check src tests hack bench

typecheck: venv ## mypy, strict on src/ and tests/ (tests/e2e, tests/nri, tests/multinode in runs of their own)
	$(VENV)/bin/mypy src
	$(VENV)/bin/mypy tests/*.py tests/unit tests/tool tests/cluster tests/root
	MYPYPATH=tests/e2e $(VENV)/bin/mypy tests/e2e
	MYPYPATH=tests/nri $(VENV)/bin/mypy tests/nri
	MYPYPATH=tests/multinode $(VENV)/bin/mypy tests/multinode

test: lint typecheck binaries ## everything CI runs: lint, types, the whole pytest suite (real cluster, root)
	$(VENV)/bin/pytest -ra

unit: venv ## the fast tests only (no cluster)
	$(VENV)/bin/pytest -ra -m "not cluster and not root"

cluster-up: venv binaries ## start the local cluster (NODES=N, default 1) with multinet deployed
	$(PY) -m localcluster.multinet deploy --nodes $(NODES)

node-nic: venv ## give a sandbox node a veth NIC on the host's lab bridge: make node-nic NODE=mnlc-node-2 NAME=eth1
	@test -n "$(NODE)" -a -n "$(NAME)" || { echo "usage: make node-nic NODE=<node> NAME=<nic>" >&2; exit 2; }
	$(PY) -m localcluster node-nic $(NODE) $(NAME)

cluster-down: venv ## stop the local cluster and restore the machine
	$(PY) -m localcluster down

demo: venv binaries ## the whole story on 2 sandbox nodes running multinet's image (KEEP=1 keeps the cluster)
	$(PY) -m localcluster.demo $(if $(KEEP),--keep,)

bench: venv binaries ## benchmarks: attach latency, pod start-up, churn, CNI chain and agent memory under load
	$(PY) bench/attach_latency.py
	$(PY) bench/nri_hook.py
	$(PY) bench/pod_startup.py
	$(PY) bench/churn.py
	$(PY) bench/cni_chain.py
	$(PY) bench/agent_load_memory.py

bench-dranet: venv binaries ## multinet beside kubernetes-sigs/dranet v1.4.0 (built once into $MULTINET_CACHE) on the 1-node local cluster; not in test or bench
	$(PY) bench/dranet.py $(if $(ROUNDS),--rounds $(ROUNDS),)

bench-scale: venv ## 1,000 simulated nodes (our slice code), 500 PodNetworks, 10,000 claims on the running local cluster (ARGS="--quick"); not in test or bench
	$(PY) bench/scale_sim.py $(ARGS)

chaos: venv binaries ## fault-injection suite: 100 pod cycles under real faults (long; MULTINET_CHAOS_SEED=N repeats an order)
	MULTINET_CHAOS_CYCLES=$${MULTINET_CHAOS_CYCLES:-100} MULTINET_CHAOS_OUTAGE=$${MULTINET_CHAOS_OUTAGE:-30} \
		$(VENV)/bin/pytest -ra tests/e2e/test_chaos_e2e.py

test-matrix: venv deps ## cluster + e2e tests on Kubernetes 1.34-1.37 and a feature table (long; not in CI)
	$(PY) -m localcluster.matrix $(if $(VERSIONS),--versions $(VERSIONS),)

proto: venv ## regenerate the checked-in gRPC code from src/multinet/kubelet/proto
	$(PY) -m protogen.kubelet

.PHONY: proto-nri
proto: proto-nri
proto-nri: venv ## regenerate the checked-in NRI/ttrpc code from src/multinet/nri/proto
	$(PY) -m protogen.nri

build: venv ## wheel and sdist into dist/
	$(PY) -m build --outdir dist .

image: venv deps ## build IMAGE from the Dockerfile without Docker (mmdebstrap base, buildah; cached); prints the OCI archive
	$(PY) -m localcluster.image build --ref $(IMAGE)

image-docker: ## docker build -t IMAGE (default the tag the manifests use; needs Docker)
	docker build -t $(IMAGE) .

kind-up: ## create the kind cluster "multinet" with NRI enabled (needs Docker and kind)
	kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
		kind create cluster --config hack/kind-config.yaml --name $(KIND_CLUSTER)

kind-load: ## load IMAGE into the kind cluster's nodes
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

deploy: ## kubectl apply -k deploy/base to the current kubectl context
	$(KUBECTL) apply -k deploy/base

kind-demo: kind-up image-docker kind-load ## kind cluster, Docker-built image (image-docker), deploy/base and deploy/samples
	$(KUBECTL) --context kind-$(KIND_CLUSTER) apply -k deploy/base
	$(KUBECTL) --context kind-$(KIND_CLUSTER) wait --for=condition=Established --timeout=60s \
		crd/podnetworks.multinetwork.networking.k8s.io
	$(KUBECTL) --context kind-$(KIND_CLUSTER) apply -k deploy/samples

clean: cluster-down ## remove everything the targets created in the checkout
	rm -rf .cluster dist build .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find src tests hack bench -name __pycache__ -type d -prune -exec rm -rf {} +
