# The two commands of the README: `make run` and `make test`. Both install
# whatever is missing first (a virtualenv in .venv with pinned dependencies,
# Debian's packaged Rust crates), and are quick when it is already there.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./var
LISTEN ?= tcp:9080
ADMIN_LISTEN ?= tcp:9081:interface=127.0.0.1
PROCESSES ?= 1
# Cluster mode (docs/cluster.md): STORE=postgresql://user:password@host:port/database
# makes this gateway a node of the cluster sharing that database; NODE names it
# (default: host name and data-plane port). Empty: the SQLite file in DATA_DIR.
STORE ?=
# More `twistd edgegw` options, passed through as they are: OPTS='--access-log -'.
OPTS ?=
NODE ?=
CARGO ?= $(shell command -v cargo 2>/dev/null || ls $$HOME/.cargo/bin/cargo 2>/dev/null)

.PHONY: setup run test bench bench-cluster clean

setup: $(VENV)/.installed crates sandbox compiled

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=compat -e '.[test]'
	touch $@

# The request path's modules compiled with mypyc (edgegw_tx/compiled.py lists
# them); quick when their sources did not change. EDGEGW_PURE_PYTHON=1 skips it.
compiled: $(VENV)/.installed
	@$(BIN)/python tools/compile-hot-path

.PHONY: compiled

crates:
	@tools/setup-crates
	@test -n "$(CARGO)" || { echo "cargo not found: install Rust (rustup) or put cargo on PATH"; exit 1; }

.PHONY: crates

# bubblewrap, iproute2 and nftables for the build and worker sandboxes (docs/isolation.md)
sandbox:
	@tools/setup-sandbox

.PHONY: sandbox

# A second node on the same machine: its own DATA_DIR and ports, e.g.
#   make run STORE=postgresql://... NODE=n2 DATA_DIR=./var2 LISTEN=tcp:9180 ADMIN_LISTEN=tcp:9181:interface=127.0.0.1
#
# Ctrl+C (SIGINT) or SIGTERM stops the gateway cleanly; twistd then ends by
# that signal (exit 130 or 143), which is how it is meant to stop, not an
# error of make's: the shell waits for it (the trap keeps the shell alive
# while twistd shuts down; twistd gets the signals' default handling) and
# turns those two into success.
run: setup
	@trap : INT TERM; \
	$(BIN)/twistd -n --pidfile= edgegw --data-dir "$(DATA_DIR)" \
		--listen "$(LISTEN)" --admin-listen "$(ADMIN_LISTEN)" --cargo "$(CARGO)" \
		--processes "$(PROCESSES)" \
		$(if $(STORE),--store "$(STORE)") $(if $(NODE),--node-name "$(NODE)") $(OPTS); \
	status=$$?; \
	case $$status in 130|143) echo "edgegw stopped"; exit 0;; *) exit $$status;; esac

test: setup browser prometheus
	CARGO="$(CARGO)" $(BIN)/python tools/run-tests

# Debian's Chromium for the Admin UI's browser tests (tests/test_admin_ui.py)
browser:
	@tools/setup-browser

.PHONY: browser

# Debian's prometheus (server and promtool) for the end-to-end metrics test
# (tests/test_observability_integration.py)
prometheus:
	@tools/setup-prometheus

.PHONY: prometheus

bench: setup $(VENV)/.bench-installed
	@tools/setup-bench
	CARGO="$(CARGO)" $(BIN)/python bench/run.py $(BENCH_ARGS)

# Cluster mode's numbers (docs/cluster.md): nodes on a new PostgreSQL database, haproxy in front.
bench-cluster: setup $(VENV)/.bench-installed
	@tools/setup-bench
	CARGO="$(CARGO)" $(BIN)/python bench/cluster.py $(BENCH_ARGS)

# the `bench` extra (matplotlib, for the PNG chart), pinned in constraints.txt
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=compat -e '.[test,bench]'
	touch $@

clean:
	test ! -x $(BIN)/python || $(BIN)/python tools/compile-hot-path --clean
	rm -rf $(VENV) _trial_temp .cache
