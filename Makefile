# occystrap: see README.md.
CARGO ?= cargo

.PHONY: build deps test lint unit integration demo bench fuzz man clean

build:
	$(CARGO) build --release

# The Debian packages the tests, the demo and the bench call (the tests
# check that every program they run comes from one of these): the real
# registry, runc, Docker, umoci and skopeo; htpasswd; busybox for the test
# images; Go's archive/tar and the tools that make the tar corpus; XFS for
# reflinked store copies. Only
# what is missing is installed, so this is quick once done.
DEBIAN_PACKAGES = docker-registry runc docker.io busybox-static apache2-utils \
	umoci skopeo iptables ca-certificates golang-go acl attr libcap2-bin \
	python3 python3-venv tar util-linux mount debootstrap time iproute2 \
	curl e2fsprogs openssl xfsprogs

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "== installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Everything CI runs: formatting, lints, then every test (unit, real
# registry, runc and docker integration). Needs root; installs the Debian
# packages first (deps).
test: deps lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet

# Only the tests that need no registry, runc or docker.
unit:
	$(CARGO) test --lib

# Only the end-to-end tier: bundles run by runc, tarballs loaded by docker.
integration:
	$(CARGO) test --test docker_load --test runc_run

# Installs what it needs, starts a local registry, pushes a tiny image and
# shows pull → tarball → docker load, and pull → bundle → runc run.
demo: deps
	bash integration/demo.sh

bench: deps
	bash integration/bench/run.sh

# Each fuzz target for FUZZ_SECONDS (default 60). Needs cargo-fuzz
# (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets the stable toolchain
# build with the sanitizer flags cargo-fuzz passes. The tar target compares
# our reader with Go's archive/tar: it needs `go` (golang-go) to build
# tests/golang/tarlist.go, whose path it takes from OCCYSTRAP_TARLIST.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = reference manifest layer gzip tar
TARLIST = fuzz/target/tarlist
$(TARLIST): tests/golang/tarlist.go
	mkdir -p fuzz/target
	GOCACHE=$(CURDIR)/fuzz/target/go-cache GOPATH=$(CURDIR)/fuzz/target/gopath \
		GOPROXY=off GOFLAGS= CGO_ENABLED=0 go build -o $@ $<
fuzz: $(TARLIST)
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		mkdir -p fuzz/corpus/$$t; \
		OCCYSTRAP_TARLIST=$(CURDIR)/$(TARLIST) \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; \
	done

# The manual page, from the command-line definition.
man: build
	mkdir -p target/man
	target/release/occystrap man > target/man/occystrap.1

clean:
	$(CARGO) clean
