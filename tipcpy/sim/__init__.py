"""Virtual clock + lossy in-memory network: the same Stack as the daemon, in tests."""

from tipcpy.sim.cluster import SimCluster, SimNode, make_node_id
from tipcpy.sim.network import Attachment, FaultModel, SimNetwork, mem_media_addr

__all__ = ["SimCluster", "SimNode", "make_node_id", "SimNetwork", "FaultModel", "Attachment",
           "mem_media_addr"]
