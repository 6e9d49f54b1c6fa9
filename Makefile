# egressguard build entry points. `make deps` once on a fresh Debian machine (as root), then `make test` or `make demo`.
SHELL := /bin/bash
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
MULTIARCH := $(shell gcc -dumpmachine 2>/dev/null)
CLANG ?= clang
# -MMD -MP: each object also depends on the headers it includes (bpf/lib/*.h, bpf/egressguard.h), listed in its .d file.
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_$(ARCH) -I/usr/include/$(MULTIARCH) -Ibpf -MMD -MP
# The production object, and under bpf/tests the probe objects only tests and benchmarks load.
BPF_SOURCES := $(wildcard bpf/*.bpf.c bpf/tests/*.bpf.c)
BPF_OBJECTS := $(BPF_SOURCES:.c=.o)
DEBIAN_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool iproute2 dnsmasq-base openssl util-linux procps kmod python3 rsyslog rsyslog-gnutls prometheus nftables dnsperf iptables docker.io debootstrap squid-openssl

.PHONY: deps ensure-deps build bpf native ts test demo bench lint clean kube-control-plane

deps:
	@if [ "$$(id -u)" -ne 0 ]; then echo "make deps installs Debian packages and must run as root" >&2; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES)
	npm ci --no-audit --no-fund

# Install only when something is missing, so `make test` and `make demo` work on a fresh machine and stay fast after.
ensure-deps:
	@missing=""; for tool in clang llc bpftool ip dnsmasq nsenter unshare rsyslogd prometheus; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -f /usr/include/bpf/libbpf.h ] || missing="$$missing libbpf-dev"; \
	[ -d node_modules ] || missing="$$missing node_modules"; \
	if [ -n "$$missing" ]; then echo "missing:$$missing; running make deps"; $(MAKE) deps; fi

build: ensure-deps bpf native ts

# Tests only: the production object as it loads on a kernel before 6.5. The same source, with the bpf_sock_destroy
# kfunc renamed to one no kernel has, so libbpf leaves the weak extern unresolved exactly as on such a kernel.
BPF_WITHOUT_SOCK_DESTROY := bpf/tests/egressguard-without-sock-destroy.bpf.o

# Tests only: the production object without the approved-flow share (one workload may take the whole node table), the
# behaviour test/integration/containment-fairness.test.ts calibrates its flood against.
BPF_WITHOUT_FLOW_SHARE := bpf/tests/egressguard-without-flow-share.bpf.o

# Tests only: the production object whose cgroup_skb program does not check a packet's source and owning cgroup, so
# that test/integration/containment-identity.test.ts proves the tc backstop's per-workload approvals on their own.
BPF_WITHOUT_SKB_SOURCE_CHECK := bpf/tests/egressguard-without-skb-source-check.bpf.o

bpf: $(BPF_OBJECTS) $(BPF_WITHOUT_SOCK_DESTROY) $(BPF_WITHOUT_FLOW_SHARE) $(BPF_WITHOUT_SKB_SOURCE_CHECK)

bpf/%.bpf.o: bpf/%.bpf.c
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_WITHOUT_SOCK_DESTROY): bpf/egressguard.bpf.c
	$(CLANG) $(BPF_CFLAGS) -Dbpf_sock_destroy=eg_kfunc_absent_before_linux_6_5 -c $< -o $@

$(BPF_WITHOUT_FLOW_SHARE): bpf/egressguard.bpf.c
	$(CLANG) $(BPF_CFLAGS) -DEG_MAX_FLOWS_PER_WORKLOAD=EG_MAX_FLOWS -c $< -o $@

$(BPF_WITHOUT_SKB_SOURCE_CHECK): bpf/egressguard.bpf.c
	$(CLANG) $(BPF_CFLAGS) -DEG_SKB_CHECKS_SOURCE=0 -c $< -o $@

-include $(BPF_OBJECTS:.o=.d) $(BPF_WITHOUT_SOCK_DESTROY:.o=.d) $(BPF_WITHOUT_FLOW_SHARE:.o=.d) $(BPF_WITHOUT_SKB_SOURCE_CHECK:.o=.d)

# Use the installed Node headers when present (Debian's nodejs: /usr; the official node images: /usr/local): node-gyp
# would otherwise download them.
NODE_GYP_FLAGS := $(if $(wildcard /usr/include/node/node_api.h),--nodedir=/usr,$(if $(wildcard /usr/local/include/node/node_api.h),--nodedir=/usr/local,))

native:
	node node_modules/node-gyp/bin/node-gyp.js rebuild --directory native --silent $(NODE_GYP_FLAGS)

ts:
	npx tsc -p tsconfig.json

# vitest (vitest.config.mjs): unit tests in parallel, then the privileged tests one file at a time; v8 coverage in dist/coverage.
test: build kube-control-plane
	npx vitest run

# The real Kubernetes control plane of the Kubernetes-mode tests: kube-apiserver and etcd built from their Go modules
# (needs Go and the Go module proxy) and cached in /var/cache/egressguard/kube/<version>; a no-op once cached.
kube-control-plane:
	nice -n 10 bash test/e2e/kube/build-control-plane.sh

demo: build
	node dist/src/cli/main.js demo

bench: build
	rm -rf dist/bench-results
	node dist/bench/dns.js
	node dist/bench/connect.js
	node dist/bench/run.js
	node dist/bench/tls.js
	node dist/bench/propagation.js
	node dist/bench/scale.js
	node dist/bench/packet-cost.js
	node dist/bench/reconcile.js
	node dist/bench/sinks.js
	node dist/bench/flood.js
	node dist/bench/report.js

lint:
	npx eslint .
	npx prettier --check .

clean:
	rm -rf dist native/build bpf/*.o bpf/*.d bpf/tests/*.o bpf/tests/*.d
