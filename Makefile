# forklb — build, run, test, install.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
CONF    ?= conf/forklb.yaml

.PHONY: all build run test install bench fuzz clean

all: build

build:
	$(CARGO) build --release

## make run: release build, then run in the foreground with the demo config.
run: build
	./target/release/forklb -c $(CONF)

## make test: formatting, lints, unit and integration tests.
test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

## make install: binary, production config (kept if present), systemd unit.
install: build
	install -D -m 0755 target/release/forklb $(DESTDIR)$(PREFIX)/sbin/forklb
	@if [ -e $(DESTDIR)/etc/forklb/forklb.yaml ]; then \
		echo "keeping existing $(DESTDIR)/etc/forklb/forklb.yaml"; \
	else \
		install -D -m 0644 conf/production.yaml $(DESTDIR)/etc/forklb/forklb.yaml; \
	fi
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' systemd/forklb.service > forklb.service.tmp
	install -D -m 0644 forklb.service.tmp $(DESTDIR)/etc/systemd/system/forklb.service
	rm -f forklb.service.tmp
	install -d -m 0755 $(DESTDIR)/var/log/forklb

## make bench: forklb vs nginx vs HAProxy (QUICK=1 for a short smoke run).
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
	for t in request_head chunked response_head; do \
		mkdir -p target/fuzz-corpus/$$t; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t target/fuzz-corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=8192 || exit 1; \
	done

clean:
	$(CARGO) clean
