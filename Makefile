# Top-level entry points. `make bench` runs the benchmark harness (root: namespaces, XDP);
# `make bench-cluster` times kubectl changes to forwarding at 10k Services in the lab cluster;
# `make bench-control` puts the control side at 10k Services beside kube-proxy's iptables and
# nftables programming of the same Services, from one run.
.PHONY: bench bench-cluster bench-control test lab

bench:
	bench/harness.sh

bench-cluster:
	bench/cluster_latency.sh

bench-control:
	bench/control.sh

test:
	scripts/test.sh

lab:
	lab/lab.sh up
