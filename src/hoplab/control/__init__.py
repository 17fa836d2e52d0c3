"""The control plane: the gRPC control service (collector) and the agent in every node."""
