"""Inbound wire formats other than OpenAI's, translated to and from the OpenAI format the pipeline speaks.

Pure functions and small state machines: no HTTP, no I/O. The HTTP handlers in `hedgeway.http` call them.
"""
