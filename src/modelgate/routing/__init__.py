"""The routing table (written by controllers, read by the router) and the router itself."""
