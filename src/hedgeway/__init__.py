"""Hedgeway: one OpenAI-compatible gateway for all of a team's LLM calls."""

__version__ = "0.1.0"
