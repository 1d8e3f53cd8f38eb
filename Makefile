# Chorus — the two commands a newcomer needs:
#   make run    install what is missing, build, start chorusd on the embedded default config
#   make test   install what is missing, build, run every test
# Also: make bench (release build + benchmark figures), make install, make clean.

SWIFT      ?= swift
CONFIG     ?= debug
BUILD_DIR  := .build/$(CONFIG)
PREFIX     ?= /usr/local
DESTDIR    ?=

# Debian 12 packages the build, the tests and the tour need.
# libcurl is the GnuTLS build because libetpan-dev (the email connector's IMAP library) depends on it.
APT_PACKAGES := pkg-config gcc make libuv1-dev libcurl4-gnutls-dev libsqlite3-dev libhttp-parser-dev \
                libsystemd-dev libssl-dev libgmime-3.0-dev libetpan-dev python3 python3-jsonschema socat curl
# The real servers the email tests run against (started on loopback by the tests themselves, never as system services).
TEST_APT_PACKAGES := dovecot-imapd dovecot-lmtpd postfix python3-aiosmtpd openssl

SHELL := /bin/bash

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps build plugins run test bench install clean check-swift

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

bench: deps
	$(SWIFT) build -c release
	$(MAKE) -C Plugins/echo-c BUILD=$(CURDIR)/.build/release
	.build/release/chorus-bench

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/chorus/plugins $(DESTDIR)$(PREFIX)/include $(DESTDIR)/etc/chorus
	install -m 755 $(BUILD_DIR)/chorusd $(BUILD_DIR)/chorusctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD_DIR)/libchorus-*.so $(DESTDIR)$(PREFIX)/lib/chorus/plugins/
	install -m 644 Sources/CChorusPlugin/include/chorus_plugin.h $(DESTDIR)$(PREFIX)/include/
	[ -f $(DESTDIR)/etc/chorus/chorus.toml ] || install -m 640 dist/chorus.toml $(DESTDIR)/etc/chorus/chorus.toml
	[ ! -d $(DESTDIR)/etc/systemd/system ] || install -m 644 dist/chorusd.service $(DESTDIR)/etc/systemd/system/

clean:
	rm -rf .build chorus-state
	$(MAKE) -C Plugins/echo-c clean
