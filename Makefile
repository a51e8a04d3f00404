# forklb — build, run, test, install.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
CONF    ?= conf/forklb.yaml

.PHONY: all build build-deps run test test-deps install bench fuzz clean

all: build

build: build-deps
	$(CARGO) build --release

## A C compiler: rustc links with `cc`, and aws-lc-sys (AWS-LC, the TLS crypto
## library) compiles C with it; nothing else (no cmake, Go, Perl or NASM).
BUILD_TOOLS = cc:gcc
build-deps:
	@$(call install_missing,$(BUILD_TOOLS),,make build)

## make run: release build, then run in the foreground with the demo config.
run: build
	./target/release/forklb -c $(CONF)

## make test: installs what the tests drive (when missing), then formatting,
## lints, unit and integration tests. A tool a test needs is installed, never
## skipped: tests/systemd_unit.rs boots a real systemd, tests/admin_api.rs
## speaks through socat.
test: build-deps test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

## Debian packages of the tools the tests run, as `command:package`. The HTTP/2
## tests (tests/h2_*.rs) drive nghttp, h2load, headless Chromium, curl with HTTP2 and Debian's own
## /usr/bin/python3 with the `h2` module (python3-h2, checked below: a module is
## not a command); they run that interpreter by its path, so a pyenv or venv
## python3 first on PATH does not matter.
TEST_TOOLS = socat:socat curl:curl openssl:openssl unshare:util-linux nsenter:util-linux \
	/lib/systemd/systemd:systemd logrotate:logrotate \
	nghttp:nghttp2-client h2load:nghttp2-client /usr/bin/python3:python3 chromium:chromium \
	/usr/sbin/haproxy:haproxy /usr/sbin/nginx:nginx-light
## Python modules the tests import with /usr/bin/python3, as `module:package`.
TEST_PY_MODULES = h2:python3-h2
test-deps:
	@$(call install_missing,$(TEST_TOOLS),$(TEST_PY_MODULES),make test)
	@if ! curl -V | grep -q '^Features:.* HTTP2'; then \
		echo "make test needs a curl with HTTP2 (Debian's has it): curl -V lists no HTTP2" >&2; exit 1; \
	fi

## $(call install_missing,COMMAND:PACKAGE...,MODULE:PACKAGE...,WHO): installs with
## apt-get (as root) the Debian packages of the commands not found (on PATH or as
## a path) and of the Python modules /usr/bin/python3 cannot import; as another
## user it names them and fails.
define install_missing
missing=""; for t in $(1); do \
	cmd=$${t%%:*}; pkg=$${t#*:}; \
	if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x $$cmd ]; then missing="$$missing $$pkg"; fi; \
done; \
for t in $(2); do \
	mod=$${t%%:*}; pkg=$${t#*:}; \
	if ! /usr/bin/python3 -c "import $$mod" >/dev/null 2>&1; then missing="$$missing $$pkg"; fi; \
done; \
if [ -n "$$missing" ]; then \
	if [ "$$(id -u)" != 0 ]; then \
		echo "$(3) needs:$$missing (run as root, or: sudo apt-get install$$missing)" >&2; exit 1; \
	fi; \
	echo "installing:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
fi
endef

## make install: binary, production config (kept if present), systemd unit, logrotate
## file, log folder. It installs target/release/forklb as it is and builds it only when
## it is missing, so `make build` as yourself, then `sudo make install` works where root
## has no cargo (and leaves no root-owned files in target/). DESTDIR and PREFIX as usual.
BIN ?= target/release/forklb
install:
	@if [ ! -x "$(BIN)" ]; then \
		if command -v $(CARGO) >/dev/null 2>&1; then \
			echo "$(BIN) is missing: building it with $(CARGO) build --release"; \
			$(CARGO) build --release || exit 1; \
		else \
			echo "make install: $(BIN) is missing and '$(CARGO)' is not found: run 'make build'" \
				"as the user who has cargo first (then 'sudo make install')" >&2; \
			exit 1; \
		fi; \
	else \
		echo "installing $(BIN) as built ('make build' first to rebuild it)"; \
	fi
	install -D -m 0755 "$(BIN)" $(DESTDIR)$(PREFIX)/sbin/forklb
	@if [ -e $(DESTDIR)/etc/forklb/forklb.yaml ]; then \
		echo "keeping existing $(DESTDIR)/etc/forklb/forklb.yaml"; \
	else \
		echo "install -D -m 0644 conf/production.yaml $(DESTDIR)/etc/forklb/forklb.yaml"; \
		install -D -m 0644 conf/production.yaml $(DESTDIR)/etc/forklb/forklb.yaml; \
	fi
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' systemd/forklb.service > forklb.service.tmp
	install -D -m 0644 forklb.service.tmp $(DESTDIR)/etc/systemd/system/forklb.service
	rm -f forklb.service.tmp
	install -D -m 0644 packaging/logrotate/forklb $(DESTDIR)/etc/logrotate.d/forklb
	install -d -m 0755 $(DESTDIR)/var/log/forklb
	@if [ -z "$(DESTDIR)" ] && ! id forklb >/dev/null 2>&1; then \
		echo "note: the workers run as user 'forklb' (user: in /etc/forklb/forklb.yaml); create it with"; \
		echo "  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin forklb"; \
	fi

## make bench: forklb vs nginx vs HAProxy vs Pingora (QUICK=1 for a short smoke run; PINGORA=0
## leaves Pingora out, whose first build - bench/pingora, needs cmake - takes ~5-7 minutes).
bench:
	bash bench/run.sh
	$(CARGO) run --release --example pick_bench
	$(CARGO) build --release --bin forklb
	$(CARGO) run --release --example reload_bench

## make fuzz: libFuzzer over the request-head parser (+ rewrite round trip), the chunked
## scanner and the response-head parser, FUZZ_SECONDS each. cargo-fuzz needs nightly
## flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. New inputs go to
## target/fuzz-corpus/; fuzz/corpus/ holds the small seed corpus kept in the repo.
FUZZ_SECONDS ?= 200
fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	for t in request_head chunked response_head h2_frame h2_session; do \
		mkdir -p target/fuzz-corpus/$$t; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t target/fuzz-corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=8192 || exit 1; \
	done

clean:
	$(CARGO) clean
