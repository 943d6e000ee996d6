"""Private descriptor pool for multinet's NRI messages (hack/protogen/nri.py)."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
