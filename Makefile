# The two commands of the README. Both build .venv from the project's own files first.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test test-fast dvc-demo clean-demo

setup:
	bash scripts/setup_env.sh

demo: setup  ## run the embedded demo end to end -> results/table4.csv
	snakemake results/table4.csv --cores all

test: setup  ## the whole test suite (slow end-to-end tests included)
	python -m pytest

test-fast: setup
	python -m pytest -m "not slow"

dvc-demo: setup
	dvc repro

clean-demo:
	rm -rf runs/demo results/demo results/*.csv .snakemake
