"""The domain: what Shipline does with an event, free of HTTP and the queue.

The flow reads off the tree: ``sources`` turn a delivery into ``events``; ``build`` turns a
``GitPushed`` into images; ``manifests`` turn an ``ImagePushed`` into a commit; ``sync`` turns a
commit into a cluster state.
"""
