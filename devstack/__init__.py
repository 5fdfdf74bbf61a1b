"""The local stack: real Redis, registry, git server and Kubernetes control plane on 127.0.0.1.

Used by ``shipline dev up|down|status`` and by the test suite's session fixtures, each with its
own state directory and free ports, so the suite can run while ``make up`` is running.
"""
