"""The offline example of vLLM's "Executing Inference" guide, unchanged but for the import line
and the model, which is a built artifact (default: the demo's)."""
import sys

from runtime import LLM, SamplingParams

MODEL = sys.argv[1] if len(sys.argv) > 1 else "artifacts/gaudi-tiny-cpu"


def main():
    prompts = [
        "Hello, my name is",
        "The future of AI is",
    ]
    sampling_params = SamplingParams(temperature=0.8, top_p=0.95)
    llm = LLM(model=MODEL)

    outputs = llm.generate(prompts, sampling_params)

    for output in outputs:
        prompt = output.prompt
        generated_text = output.outputs[0].text
        print(f"Prompt: {prompt!r}, Generated text: {generated_text!r}")


if __name__ == "__main__":
    main()
