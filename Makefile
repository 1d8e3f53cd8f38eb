# Chorus — the two commands a newcomer needs:
#   make run    install what is missing, build, start chorusd on the embedded default config
#   make test   install what is missing, build, run every test
# Also: make bench (release build + benchmark figures), make install, make deb (the Debian package),
# make test-deb (builds, installs, exercises and purges that package), make clean.

SWIFT      ?= swift
CONFIG     ?= debug
BUILD_DIR  := .build/$(CONFIG)
PREFIX     ?= /usr/local
DESTDIR    ?=

# Debian 12 packages the build, the tests and the tour need.
# libcurl is the GnuTLS build because libetpan-dev (the email connector's IMAP library) depends on it.
APT_PACKAGES := pkg-config gcc make libuv1-dev libcurl4-gnutls-dev libsqlite3-dev libhttp-parser-dev \
                libsystemd-dev libssl-dev libgmime-3.0-dev libetpan-dev libjemalloc-dev python3 python3-jsonschema socat curl
# The real servers the email tests run against (started on loopback by the tests themselves, never as system services).
TEST_APT_PACKAGES := dovecot-imapd dovecot-lmtpd postfix python3-aiosmtpd openssl
# Building the Debian package (make deb), and testing it (make test-deb: lintian, systemd-analyze, ip).
DEB_APT_PACKAGES := dpkg-dev patchelf binutils python3
DEB_TEST_APT_PACKAGES := lintian systemd iproute2 util-linux man-db curl gcc pkg-config

# make deb: the release build directory (SCRATCH=.build-x builds into .build-x/release instead) and
# the package's version (packaging/debian/changelog; its upstream part must equal chorusd --version).
SCRATCH     ?= .build
DEB_VERSION := $(shell awk 'NR == 1 { gsub(/[()]/, "", $$2); print $$2 }' packaging/debian/changelog)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_FILE    := $(SCRATCH)/deb/chorus_$(DEB_VERSION)_$(DEB_ARCH).deb

SHELL := /bin/bash

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps build plugins run test bench install deb test-deb clean check-swift

all: build

check-swift:
	@command -v $(SWIFT) >/dev/null || { echo "swift not found: install the Swift 6 toolchain (swift.org) and put it on PATH"; exit 1; }

# Installs only the Debian packages that are missing (apt-get update once, only if something is missing).
deps: check-swift
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

test-deps: deps
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"

# Postfix is preseeded to "No configuration": the tests run their own instance; none is set up for the machine.
.PHONY: apt-install
apt-install:
	@missing=""; for p in $(PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build -c $(CONFIG)
	$(MAKE) -C Plugins/echo-c BUILD=$(CURDIR)/$(BUILD_DIR)

plugins: build

# Starts chorusd in the foreground on the embedded default config
# (state in ./chorus-state, socket ./chorus-state/chorus.sock, HTTP on 127.0.0.1:8780, sandbox connector).
run: build
	$(BUILD_DIR)/chorusd

# XCTest's last summary line is turned into the plain "N passed, M failed" line CI reads.
test: build test-deps
	$(SWIFT) build -c $(CONFIG) --build-tests
	@set -o pipefail; $(SWIFT) test -c $(CONFIG) --skip-build 2>&1 | tee .build/test-output.log
	@awk '/Executed [0-9]+ tests?, with [0-9]+ failures?/ { n=$$2; f=$$5 } END { if (n == "") { print "no XCTest summary found"; exit 1 } printf "%d passed, %d failed\n", n-f, f }' .build/test-output.log
	@echo "deb package test: running (release build, package, install, purge; log in .build/test-deb.log)"
	@if $(MAKE) --no-print-directory test-deb > .build/test-deb.log 2>&1; then echo "deb package test: passed"; \
	 else tail -n 40 .build/test-deb.log; echo "deb package test: FAILED (log: .build/test-deb.log)"; exit 1; fi

bench: deps
	$(SWIFT) build -c release
	$(MAKE) -C Plugins/echo-c BUILD=$(CURDIR)/.build/release
	.build/release/chorus-bench

# The units go to /etc/systemd/system (if systemd is there) with ExecStart pointing at $(PREFIX)/bin;
# the Swift runtime stays the toolchain's (the binaries' RUNPATH), so its crash reporter is found by itself.
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/chorus/plugins $(DESTDIR)$(PREFIX)/include/chorus \
	  $(DESTDIR)$(PREFIX)/share/pkgconfig $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)/etc/chorus
	install -m 755 $(BUILD_DIR)/chorusd $(BUILD_DIR)/chorusctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD_DIR)/libchorus-*.so $(DESTDIR)$(PREFIX)/lib/chorus/plugins/
	install -m 644 Sources/CChorusPlugin/include/chorus_plugin.h $(DESTDIR)$(PREFIX)/include/chorus/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e "s|@VERSION@|$$($(BUILD_DIR)/chorusd --version | awk '{print $$2}')|" \
	  dist/chorus-plugin.pc.in > $(DESTDIR)$(PREFIX)/share/pkgconfig/chorus-plugin.pc
	install -m 644 dist/systemd/chorus.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/chorus.conf
	install -m 644 dist/systemd/chorus.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/chorus.conf
	install -m 644 docs/man/chorusctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 docs/man/chorus.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 docs/man/chorusd.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	[ -f $(DESTDIR)/etc/chorus/chorus.toml ] || install -m 644 dist/chorus.toml $(DESTDIR)/etc/chorus/chorus.toml
	if [ -d $(DESTDIR)/etc/systemd/system ]; then for u in chorus.service chorus.socket chorus-http.socket; do \
	  sed -e 's|/usr/bin/|$(PREFIX)/bin/|g' -e '/^Environment=SWIFT_BACKTRACE=/d' dist/systemd/$$u > $(DESTDIR)/etc/systemd/system/$$u; \
	  chmod 644 $(DESTDIR)/etc/systemd/system/$$u; done; fi

# The Debian package: a release build (in $(SCRATCH)/release), the C echo plugin beside it, then
# packaging/build-deb.sh stages, strips, sets RUNPATHs, computes Depends and runs dpkg-deb.
deb: deps
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(DEB_APT_PACKAGES)"
	$(SWIFT) build -c release --scratch-path $(SCRATCH)
	$(MAKE) -C Plugins/echo-c BUILD=$(CURDIR)/$(SCRATCH)/release
	packaging/build-deb.sh $(SCRATCH)/release $(SCRATCH)/deb
	@echo "built $(DEB_FILE)"

# Installs the package on this machine, runs and checks it, removes and purges it (needs root; leaves
# the machine as it was). See Tests/Packaging/test-deb.sh.
test-deb: deb
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(DEB_TEST_APT_PACKAGES)"
	$(SUDO) Tests/Packaging/test-deb.sh $(DEB_FILE)

clean:
	rm -rf .build chorus-state
	$(MAKE) -C Plugins/echo-c clean
