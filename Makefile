# The two commands a fresh machine needs (run as root): `make demo` and `make test`.
.PHONY: setup demo test test-fast lint bench clean-stale

setup:
	bash scripts/dev-setup.sh

demo: setup
	.venv/bin/python -m scripts.demo

test: setup
	cd sdk/js && node --test test/*.test.mjs
	.venv/bin/python -m pytest -q -p no:cacheprovider

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow" -p no:cacheprovider

bench: setup
	.venv/bin/python -m bench

lint:
	.venv/bin/ruff check runtad runta tests
	.venv/bin/mypy runtad runta

clean-stale:
	.venv/bin/python -m tests.lab cleanup
