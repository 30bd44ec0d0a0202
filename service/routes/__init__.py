"""HTTP endpoints, one module per resource; each route parses, calls one function, answers."""
