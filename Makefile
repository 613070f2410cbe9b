# Two commands do everything on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
STACK := infra/local/stack.sh
# Every crate under functions/ is one Lambda function.
FUNCTIONS := $(notdir $(patsubst %/,%,$(wildcard functions/*/)))
WITH_STACK = eval "$$($(STACK) env)" &&

.PHONY: up down build lint sqlx-prepare test unit integration e2e demo bench coldstart redrive clean-stack

up: ## start the local stack (idempotent; installs what is missing)
	@bash $(STACK) up

down: ## stop what `make up` started
	@bash $(STACK) down

build: up ## release build of every function with cargo lambda; checks glibc <= 2.34
	@$(WITH_STACK) cargo lambda build --release $(addprefix -p ,$(FUNCTIONS))
	@bash infra/local/check-glibc.sh $(addsuffix /bootstrap,$(addprefix target/lambda/,$(FUNCTIONS)))

lint: up ## rustfmt, clippy (warnings are errors), the SQL query cache, cfn-lint, the template contract test, checkov
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	@$(WITH_STACK) bash infra/local/sqlx.sh check
	@$(WITH_STACK) sam validate --lint
	@$(WITH_STACK) python3 infra/template/render.py
	@$(WITH_STACK) python3 -m unittest infra/template/test_contract.py
	@# checkov reads CloudFormation, not SAM Globals or Fn::ForEach: it scans the rendered template.
	@$(WITH_STACK) checkov -f .stack/template.rendered.json --framework cloudformation --compact --quiet --skip-download

sqlx-prepare: up ## after changing a query or a migration: check every query against a fresh database, rewrite .sqlx/
	@$(WITH_STACK) bash infra/local/sqlx.sh prepare

unit: ## unit tests: no services needed
	cargo test --workspace --exclude integration-tests --lib --bins --tests --locked

integration: up ## integration tests against the real stack, and the stack against template.yaml
	@$(WITH_STACK) python3 infra/local/provision.py --check
	@$(WITH_STACK) cargo test -p integration-tests --test '*' --locked

e2e: up ## the built function through cargo lambda watch + invoke with the files in events/
	@bash infra/local/e2e.sh test

test: lint unit integration e2e ## everything CI runs

demo: up ## run the functions locally and push the sample events through them
	@bash infra/local/e2e.sh demo

DLQ ?= coupon-issue-dlq
redrive: up ## after a fix, replay a dead-letter topic to the topics its records came from (DLQ=coupon-issue-dlq)
	@$(WITH_STACK) cargo run -q --locked -p devtools -- redrive $(DLQ)

coldstart: up ## size and init time of each release binary (after make build)
	@$(WITH_STACK) python3 infra/local/coldstart.py

bench: up ## benchmarks; figures to stdout and target/bench/results.json
	@$(WITH_STACK) RUST_LOG=warn cargo bench -p integration-tests --locked 2>&1 | grep -v '^{"' | grep -v -E '^\s*(Compiling|Running|running 0|test result: ok. 0)|^$$'
