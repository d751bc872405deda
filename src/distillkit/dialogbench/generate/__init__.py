"""Generating new DialogBench instances with any OpenAI-compatible LLM: plan, prompt, validate, filter, write."""
