"""Generated protobuf/gRPC code for the kubelet protocols. Do not edit: run `make proto`."""
