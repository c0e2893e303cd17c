# The front door: thin targets over npm scripts.
.PHONY: all install build demo test test-unit test-cli test-store test-e2e test-faults test-cluster bench lint clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	npm run --silent build

# Split → work with several local workers → verify → merge, on generated data; shows the result.
demo: build
	./scripts/demo.sh

# The README and docs render as written (fences closed, relative links resolve), then the suite.
test: build
	node scripts/check-readme.mjs
	npm test

test-unit test-cli test-store test-e2e test-faults test-cluster: build
	node scripts/run-tests.mjs $(@:test-%=%)

bench: build
	npm run --silent bench

lint: install
	npm run --silent lint

clean:
	rm -rf dist demo-out .bench
