# Top-level entry points. `make bench` runs the benchmark harness (root: namespaces, XDP).
.PHONY: bench test lab

bench:
	bench/harness.sh

test:
	scripts/test.sh

lab:
	lab/lab.sh up
