# Top-level entry points. `make bench` runs the benchmark harness (root: namespaces, XDP);
# `make bench-cluster` times kubectl changes to forwarding at 10k Services in the lab cluster.
.PHONY: bench bench-cluster test lab

bench:
	bench/harness.sh

bench-cluster:
	bench/cluster_latency.sh

test:
	scripts/test.sh

lab:
	lab/lab.sh up
