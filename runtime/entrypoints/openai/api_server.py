"""python -m runtime.entrypoints.openai.api_server --model DIR [--host H] [--port P] ...

The vLLM-style entry point of the OpenAI-compatible server; it takes vLLM's flag names (see
runtime/server/options.py). A flag it does not know, or a value it cannot serve, is one line on
stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from runtime.server.options import FLAGS


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with errors as one line (no usage dump) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help for the supported flags)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m runtime.entrypoints.openai.api_server", allow_abbrev=False,
                            description="OpenAI-compatible server for a gaudi-aot artifact or checkpoint.")
    parser.add_argument("--model", required=True, help="Artifact directory or Hugging Face checkpoint directory.")
    for flag in FLAGS:
        kwargs = {"dest": flag.dest, "help": flag.help, "default": flag.default}
        if flag.negatable:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif flag.type is None:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = flag.type
            if flag.choices:
                kwargs["choices"] = flag.choices
            if flag.multiple:
                kwargs["nargs"] = "+"
        parser.add_argument(*flag.names, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        parser.error(f"unrecognized argument {flag}")
    from runtime.server.options import configs_from_flags
    try:
        server_config, engine_options = configs_from_flags(args.model, vars(args))
    except ValueError as exc:
        parser.error(str(exc).rstrip("."))
    from runtime.server.launch import serve
    try:
        serve(server_config, engine_options)
    except ValueError as exc:  # the model path, the artifact or the chat template is wrong
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
