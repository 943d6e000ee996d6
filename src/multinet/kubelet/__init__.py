"""Adapter: the kubelet plugin side of the node agent (registration and DRA gRPC over unix sockets).

`server.KubeletPlugin` serves both (grpclib servers, `grpcserver.UnixServer`); `dra.Preparer` is
the interface the agent implements.
The `.proto` sources are in `proto/`, the generated code in `_pb/` (see `hack/protogen/kubelet.py`).
"""
