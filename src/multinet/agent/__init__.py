"""Entry point 2: the node agent (inventory, slices, kubelet DRA plugin, NRI plugin, checkpoint)."""
