"""`apu view`: a local web viewer for browsing fitted pairs in 3D and marking them accepted / rejected.

Register with `from cli import view as view_cli; view_cli.register(app)`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.render import ImageRoot, JsonOut, ModelOpt, Source, fail, user_errors


def view(
    source: Source,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 = any free port).")
    ] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to bind; the default keeps the viewer private to this machine.")
    ] = "127.0.0.1",
    model: ModelOpt = None,
    image_root: ImageRoot = None,
    json_out: JsonOut = False,
) -> None:
    """Serve the viewer until Ctrl-C: rotate (drag), pan (right/shift-drag), zoom (wheel); toggle people,
    contacts, keypoints; sort by any loss; accept (a) / reject (r) / clear (u). Marks are saved atomically
    to marks.json next to the fits (or <dataset>.marks.json); `apu filter` and the export honour them."""
    from apu_jax.viz.load import open_source
    from apu_jax.viz.server import make_server

    try:
        src = open_source(source, model=model, image_root=image_root)
        server = make_server(src, host=host, port=port)
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")
    except user_errors() as err:
        fail(str(err))
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host}:{bound_port}/"
    info = {"url": url, "pairs": len(src.pair_ids), "marks": str(src.marks_path)}
    typer.echo(
        json.dumps(info) if json_out else f"apu viewer on {url}  ({info['pairs']} pairs; Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add `apu view` to the root app."""
    app.command("view")(view)


if __name__ == "__main__":
    typer.run(view)
