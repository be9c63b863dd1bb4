"""The HTTP edge: the only package that imports the web framework (Starlette on uvicorn)."""
