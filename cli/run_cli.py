"""gaudi-run: serve or query a built artifact (or a checkpoint directory, built on first use)."""
from __future__ import annotations

import sys

import click

from cli.common import setup_logging, user_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run a gaudi-aot artifact: offline generation or an OpenAI-compatible server."""


@main.command()
@click.argument("model", type=click.Path())
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="0 is greedy.")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True, help="0 keeps every token.")
@click.option("--seed", type=int, default=None, help="Makes sampling reproducible.")
@click.option("--max-model-len", type=click.IntRange(min=1), default=None)
@click.option("--log-level", default="WARNING", show_default=True)
@user_errors
def generate(model, prompt, max_tokens, temperature, top_p, top_k, seed, max_model_len, log_level) -> None:
    """Print the completion of PROMPT by MODEL, streaming tokens as they come."""
    setup_logging(log_level)
    import runtime
    from runtime.sampling_params import SamplingParams

    engine = runtime.load(model, max_model_len=max_model_len, max_num_seqs=1)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
    engine.add_request("cli", prompt, None, params)
    shown = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            text = out.outputs[0].text
            sys.stdout.write(text[shown:])
            sys.stdout.flush()
            shown = len(text)
    sys.stdout.write("\n")


def _register_serve() -> None:
    try:
        from cli.serve import serve
    except ImportError:  # the server extra is not installed
        return
    main.add_command(serve)


_register_serve()

if __name__ == "__main__":
    main()
