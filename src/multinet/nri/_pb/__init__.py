"""Generated protobuf code for multinet.nri. Do not edit: run `make proto`."""
