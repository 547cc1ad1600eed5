"""Provider registry: wire-format name -> class. Adding a provider is one module plus one line here."""

from __future__ import annotations

from hedgeway.providers.anthropic import AnthropicProvider
from hedgeway.providers.base import Provider, StreamReply
from hedgeway.providers.gemini import GeminiProvider
from hedgeway.providers.openai import AzureOpenAIProvider, OpenAIProvider
from hedgeway.providers.simulated import SimulatedProvider
from hedgeway.providers.simulated_quality import SimulatedJudgeProvider, SimulatedQualityProvider

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "azure": AzureOpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "simulated": SimulatedProvider,
    "simulated-quality": SimulatedQualityProvider,  # the router-loop demo's tiers and judge
    "simulated-judge": SimulatedJudgeProvider,
}

__all__ = ["PROVIDERS", "Provider", "StreamReply"]
