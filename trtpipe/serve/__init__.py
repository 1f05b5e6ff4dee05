"""Serving with Triton Inference Server: model repository export (triton_export), the server (server)."""
