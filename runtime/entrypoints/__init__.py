"""Entry points with vLLM's module paths, so vLLM command lines work with the runtime."""
