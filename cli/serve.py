"""gaudi-run serve ARTIFACT: the OpenAI-compatible server, with the same flags as
`python -m runtime.entrypoints.openai.api_server` (vLLM's names; see runtime/server/options.py)."""
from __future__ import annotations

import click

from cli.common import user_errors
from runtime.server.options import FLAGS


def _click_option(flag):
    names = list(flag.names)
    if flag.negatable:
        long = names[0]
        return click.option(f"{long}/--no-{long[2:]}", flag.dest, default=flag.default, show_default=True,
                            help=flag.help)
    if flag.type is None:
        return click.option(*names, flag.dest, is_flag=True, default=False, help=flag.help)
    kind = click.Choice(flag.choices) if flag.choices else flag.type
    return click.option(*names, flag.dest, type=kind, default=flag.default, multiple=flag.multiple,
                        show_default=flag.default is not None, help=flag.help)


def _with_flags(fn):
    for flag in reversed(FLAGS):
        fn = _click_option(flag)(fn)
    return fn


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path())
@_with_flags
@user_errors
def serve(model: str, **values) -> None:
    """Serve MODEL (an artifact or checkpoint directory) over OpenAI's HTTP API until SIGTERM."""
    from runtime.server.launch import serve as run_server
    from runtime.server.options import configs_from_flags

    server_config, engine_options = configs_from_flags(model, values)
    run_server(server_config, engine_options)
