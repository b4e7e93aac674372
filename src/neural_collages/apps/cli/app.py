"""``collage app``: serve the web app (fractal art and the codecs in the browser) with uvicorn."""

from __future__ import annotations

from ...errors import ConfigurationError
from .common import positive_int, set_threads


def add_parser(sub) -> None:
    p = sub.add_parser(
        "app",
        help="serve the web app: fractal art and the codecs in the browser",
        description="Serve a small web app (one page, no assets from the internet): fractalize an image, or "
        "compress it with a codec and compare with JPEG at the same size. Listens on --host:--port; open the "
        "printed address in a browser. Jobs run one at a time.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s; 0.0.0.0 serves other machines too)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(handler=run_app)


def run_app(args) -> int:
    import socket

    import uvicorn

    from ..web.app import create_app

    if not 0 <= args.port <= 65535:
        raise ConfigurationError(f"--port must lie in 0..65535, got {args.port}")
    try:  # one clear line instead of uvicorn's log when the address is taken or invalid
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    set_threads(args.threads)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"collage app: serving on http://{host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0
