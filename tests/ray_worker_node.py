"""`ray start --address ...` for a second raylet on this machine, bound to 127.0.0.1.

With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (tests/conftest.py) Ray keeps 127.0.0.1 as the node
address instead of resolving it to the machine's interface address, but its CLI then refuses to
start a worker node. This launcher lifts only that refusal and keeps loopback as the address, so
every node, worker and driver of the test cluster talks over 127.0.0.1.

    python tests/ray_worker_node.py --address=127.0.0.1:PORT --node-ip-address=127.0.0.1 ...
"""

import sys

import ray._private.ray_constants as constants
import ray._private.services as services

constants.ENABLE_RAY_CLUSTER = True  # the CLI's check for worker nodes
services.get_node_ip_address = lambda address=None: services.get_localhost_ip()  # loopback stays loopback

from ray.scripts.scripts import main  # noqa: E402

sys.argv = ["ray", "start", *sys.argv[1:]]
main()
