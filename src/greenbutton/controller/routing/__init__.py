"""Traffic: the route table the gateway reads (``table``), pure split and mirror decisions
(``split``), and the leader's table shared with follower replicas (``shared``)."""
