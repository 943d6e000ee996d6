"""A grpcio (C core) client for the agent's kubelet services, as the tests' stand-in kubelet.

The agent serves with grpclib; the kubelet is a grpc-go client. Calling through grpcio, an
independent implementation of the protocol, shows the server speaks gRPC as the C core and Go
clients expect, not only as grpclib's own client does. grpcio stays a development dependency
for this. The methods come from the service descriptors of the generated `_pb2` modules, so no
grpcio stubs are generated.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import grpc
from google.protobuf import message_factory


class Stub:
    """`Stub(channel, dra_v1_pb2, "DRAPlugin").NodePrepareResources(request)`: each method of
    the service, as a grpcio multi-callable (unary-unary or unary-stream) on `channel`."""

    def __init__(self, channel: grpc.aio.Channel, module: ModuleType, service: str) -> None:
        descriptor = module.DESCRIPTOR.services_by_name[service]
        self._methods: dict[str, Any] = {}
        for method in descriptor.methods:
            assert not method.client_streaming, "no client streams among the kubelet's calls"
            kind = channel.unary_stream if method.server_streaming else channel.unary_unary
            self._methods[method.name] = kind(
                f"/{descriptor.full_name}/{method.name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=message_factory.GetMessageClass(
                    method.output_type
                ).FromString,
            )

    def __getattr__(self, name: str) -> Any:
        try:
            return self._methods[name]
        except KeyError:
            raise AttributeError(name) from None
