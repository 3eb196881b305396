# wgmesh: `make lab` shows the mesh come up locally; `make test` runs every tier.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
VENV_STAMP := .venv/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
STACK ?= lab
OUT ?= build/render/$(STACK)

.PHONY: help venv debs lint test test-fast render client host push diagram lab lab-down lab-vm lab-vm-down bench change-table clean

help:
	@echo "make lab        bring the example mesh up in network namespaces, print its health (STACK=lab-hub etc.)"
	@echo "make lab-down   remove every namespace, mount and process make lab started"
	@echo "make test       install what is needed and run every test tier (lab included)"
	@echo "make test-fast  the tests that need no root, namespaces or VMs (not netns, lab or vm)"
	@echo "make lint       ruff, ruff format --check, mypy, shellcheck"
	@echo "make render STACK=dev OUT=dir   render every node's cloud-init and client config offline (KEYS=file: keep keys)"
	@echo "make client NAME=laptop STACK=dev   a roaming client's conf + QR code (RENDER=dir: offline)"
	@echo "make host NAME=home STACK=dev   a cloud: external host's installer + #cloud-config (RENDER=dir: offline)"
	@echo "make push STACK=dev NODE=aws-fra   liveUpdates off: bring running nodes to the current config (NODE unset: all)"
	@echo "make diagram STACK=dev OUT=dir   the topology as Mermaid, DOT, SVG and PNG (Graphviz)"
	@echo "make lab-vm     the same mesh in real QEMU VMs booting the rendered cloud-init"
	@echo "make lab-vm-down   remove the QEMU VMs and everything make lab-vm started"
	@echo "make change-table   regenerate docs/changes.md's table of what each stack change creates, updates, replaces, deletes"
	@echo "make bench      print the figures in docs/PERFORMANCE.md: program time, user-data fit, quota budget, lab bring-up, MTU"
	@echo "make venv       create or update .venv from requirements.txt (every target needing Python runs it)"
	@echo "make debs       install the Debian packages the lab and tests need (as root; otherwise list what is missing)"
	@echo "make clean      remove build/ and the tool caches"
	@echo "make help       this list (the default goal)"

# Incremental: a changed requirements.txt installs the difference, never wipes a working venv.
$(VENV_STAMP): requirements.txt
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt
	rm -f .venv/.installed-*
	touch $@

venv: $(VENV_STAMP)

debs:
	@scripts/install-debs

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	scripts/lint-shell

test: venv debs lint
	$(PY) -m pytest

# Pure tests wherever they live (tests/lab has some): no root, no namespaces, no VMs.
test-fast: venv
	$(PY) -m pytest -m "not netns and not lab and not vm"

render: venv
	$(PY) -m tools.render --stack $(STACK) --out $(OUT) $(if $(KEYS),--keys $(KEYS))

diagram: venv debs
	$(PY) -m tools.diagram --stack $(STACK) --out $(OUT)

client: venv
	@test -n "$(NAME)" || { echo "make client: set NAME=<client name in wgmesh:clients>" >&2; exit 2; }
	$(PY) -m tools.client --name $(NAME) --stack $(STACK) $(if $(RENDER),--render $(RENDER)) $(if $(CLIENT_OUT),--out $(CLIENT_OUT))

host: venv
	@test -n "$(NAME)" || { echo "make host: set NAME=<cloud: external node in wgmesh:nodes>" >&2; exit 2; }
	$(PY) -m tools.host --name $(NAME) --stack $(STACK) $(if $(RENDER),--render $(RENDER)) $(if $(HOST_OUT),--out $(HOST_OUT))

# The payload goes from the stack's secret output to ssh's stdin: never on a command line.
push: venv
	@test "$(origin STACK)" != "file" || { echo "make push: set STACK=<stack> (and NODE=<node>, or all nodes)" >&2; exit 2; }
	$(PY) -m tools.push --stack $(STACK) $(if $(NODE),--node $(NODE))

lab: venv debs
	$(PY) -m lab up --driver netns --stack $(STACK)$(if $(INSTALLER), --installer)

lab-down: venv
	$(PY) -m lab down --driver netns

lab-vm: venv debs
	$(PY) -m lab up --driver vm --stack $(STACK)

lab-vm-down: venv
	$(PY) -m lab down --driver vm

bench: venv debs
	$(PY) -m bench.program
	$(PY) -m bench.fit
	$(PY) -m bench.quota
	$(PY) -m bench.lab

# docs/changes.md's "What each change does": the program run twice per change under mocks (tests/program/change_rows.py).
change-table: venv
	$(PY) -m bench.changes --write

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache .hypothesis
