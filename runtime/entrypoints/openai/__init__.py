"""`python -m runtime.entrypoints.openai.api_server`: the OpenAI-compatible server, as in vLLM."""
