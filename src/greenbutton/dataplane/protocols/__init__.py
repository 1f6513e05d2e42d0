"""Protocol adapters: parse a request, call the DataPlane, render its result."""
