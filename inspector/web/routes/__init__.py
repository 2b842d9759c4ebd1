"""The dashboard's routes, one module per page or resource; web/app.py wires them together."""
