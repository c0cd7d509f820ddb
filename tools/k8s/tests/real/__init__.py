"""The Kubernetes tests on real nodes: one package, so its fixtures (clusters, nodes, images, releases) start once."""
