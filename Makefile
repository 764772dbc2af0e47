# occystrap: see README.md.
CARGO ?= cargo

.PHONY: build test lint unit integration demo bench clean

build:
	$(CARGO) build --release

# Everything CI runs: formatting, lints, then every test (unit, real
# registry, runc and docker integration). Needs root and the Debian
# packages listed in .ci/run.
test: lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Only the tests that need no registry, runc or docker.
unit:
	$(CARGO) test --lib

# Only the end-to-end tier: bundles run by runc, tarballs loaded by docker.
integration:
	$(CARGO) test --test docker_load --test runc_run

# Installs what it needs, starts a local registry, pushes a tiny image and
# shows pull → tarball → docker load, and pull → bundle → runc run.
demo:
	bash integration/demo.sh

bench:
	bash integration/bench/run.sh

clean:
	$(CARGO) clean
