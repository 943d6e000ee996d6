"""Private descriptor pool for multinet's NRI messages (multinet.nri.protogen)."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
