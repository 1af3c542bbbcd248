"""gaudi-aot runtime: load a built artifact (or a checkpoint) and serve it.

    from runtime import LLM, SamplingParams
    llm = LLM(model="artifacts/tiny")
    outputs = llm.generate(["Hello, my name is"], SamplingParams(temperature=0.8, top_p=0.95))
"""
from runtime.llm import LLM
from runtime.loading import load
from runtime.outputs import CompletionOutput, RequestOutput
from runtime.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "load"]
