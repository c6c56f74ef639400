"""`normalcy serve` and `normalcy serve-bench`: the HTTP service and its load benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.core.errors import DataError


def serve(
    model_dirs: list[Path] = typer.Argument(None, help="Model folders to serve; each is named after its folder, "
                                            "without a .model suffix."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on; a non-loopback one needs --token-file."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    token_file: Path = typer.Option(None, "--token-file",
                                    help="File holding the bearer token that model paths require."),
    name: list[str] = typer.Option(None, "--name", help="NAME=DIR: serve DIR under NAME (repeatable)."),
    workers: int = typer.Option(2, "--workers", help="Scorings that run at once."),
    threads: int = typer.Option(1, "--threads", help="CPU threads each scoring uses."),
    max_body_mb: float = typer.Option(32, "--max-body-mb", help="Largest request body, in MiB."),
    max_image_pixels: int = typer.Option(None, "--max-image-pixels",
                                         help="Largest image, width x height (default 40,000,000)."),
    timeout: float = typer.Option(30, "--timeout", help="Seconds a request may wait and score before 503/504."),
    allow_host: list[str] = typer.Option(None, "--allow-host",
                                         help="Without a token, a Host name (NAME or NAME:PORT) clients may use "
                                              "besides the listening address (repeatable)."),
    signing_key: Path = typer.Option(None, "--signing-key",
                                     help="Ed25519 private key (normalcy embeddings keygen): offer POST "
                                          "/v2/embeddings/sign and /verify; needs --token-file."),
    verify_key: Path = typer.Option(None, "--verify-key",
                                    help="Ed25519 public key (KEY.pub): offer POST /v2/embeddings/verify (default: "
                                         "the signing key's); needs --token-file."),
):
    """Serve models over HTTP with the Open Inference Protocol v2 (KServe v2 REST)."""
    import logging
    import sys

    import uvicorn

    from normalcy.serve.app import create_app
    from normalcy.serve.codec import Limits

    models = [*(model_dirs or []), *(_named(n) for n in name or [])]
    token = read_token(token_file) if token_file else None
    check_host(host, token)
    signing = None
    if signing_key is not None or verify_key is not None:
        if token is None:  # checked before the keys are read
            raise DataError("--signing-key and --verify-key need --token-file FILE: anyone who could reach the "
                            "signing endpoints could sign vectors with this server's key")
        from normalcy.embeddings import keys
        from normalcy.embeddings.service import SigningService

        signing = SigningService(keys.load_private(signing_key) if signing_key else None,
                                 keys.load_public(verify_key) if verify_key else None)
        if signing_key and verify_key and signing.public_key != signing.private_key.public_key():
            raise DataError(f"--verify-key {verify_key} is not the public key of --signing-key {signing_key}")
    for value, what in ((workers, "--workers"), (threads, "--threads")):
        if value < 1:
            raise DataError(f"{what} must be at least 1, got {value}")
    limits = Limits(max_body_bytes=int(max_body_mb * 2**20), max_image_pixels=max_image_pixels, timeout_s=timeout)
    app = create_app(models, token=token, limits=limits, workers=workers, threads=threads,
                     allow_hosts=allow_host or (), signing=signing)
    base = f"http://{_url_host(host)}:{port}"
    typer.echo(f"serving {len(app.state.models)} model(s) on {base}"
               + (" (bearer token required)" if token else ""), err=True)
    width = max(map(len, app.state.models), default=0)
    for served in app.state.models.values():
        typer.echo(f"  {served.name:<{width}}  {base}/v2/models/{served.name}/infer  ({served.path})", err=True)
    if signing is not None:
        paths = ("sign", "verify") if signing.private_key is not None else ("verify",)
        typer.echo(f"  embeddings ({signing.key_id}): " + ", ".join(f"{base}/v2/embeddings/{p}" for p in paths),
                   err=True)
    typer.echo(f"  page: {base}/", err=True)
    # Set up only once the server will run: a refused start leaves the process's logging as it was.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("normalcy.serve.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    # uvicorn stops on SIGTERM/SIGINT: it stops accepting, lets in-flight requests finish
    # (up to 30 s), then shuts the scoring threads down.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", timeout_graceful_shutdown=30,
                limit_concurrency=workers * 64 + 64)


def serve_bench(
    model_dir: Path = typer.Argument(..., help="Model folder to benchmark."),
    data: Path = typer.Option(None, "--data", help="Image models: a folder of images to send (one per request)."),
    request: Path = typer.Option(None, "--request", help="Any model: a JSON infer request body to send repeatedly."),
    requests: int = typer.Option(2000, "--requests", help="Requests to send."),
    concurrency: int = typer.Option(8, "--concurrency", help="Requests in flight at once."),
    workers: int = typer.Option(2, "--workers", help="The server's --workers."),
    threads: int = typer.Option(1, "--threads", help="The server's --threads."),
    outputs: str = typer.Option("score,label", "--outputs", help="Outputs to ask for, comma-separated ('' for all)."),
    inprocess: int = typer.Option(400, "--inprocess-requests", help="Requests' worth of items scored in-process."),
    json_path: Path = typer.Option(Path("serve-bench.json"), "--json", help="Results JSON (and .md beside it)."),
    binary: bool = typer.Option(False, "--binary/--no-binary",
                                help="Also send the same inputs as binary tensor data (raw image files), "
                                     "alternating with the JSON load."),
):
    """Load-test `normalcy serve` on loopback and compare with scoring in-process."""
    from normalcy.serve.bench import run

    if (data is None) == (request is None):
        raise DataError("give --data (a folder of images) or --request (a JSON infer body), not both or neither")
    json_file, md_file, records = run(model_dir, data, request, requests, concurrency, workers, threads,
                                      [o for o in outputs.split(",") if o], json_path, inprocess, binary)
    for r in records:
        typer.echo(f"{r['mode']:>10} {r['body']:>6} ({r['workers']} x {r['threads']} threads): "
                   f"{r['throughput_per_s']:.1f} items/s "
                   f"({r['relative']:.0%}), p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']}")
    typer.echo(f"results: {json_file}, {md_file}")


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the token file {path}: {exc}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise DataError(f"the token in {path} must be one line of at least 16 characters, no spaces")
    return token


def check_host(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    import ipaddress

    if token is not None or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise DataError(f"refusing to listen on {host} without a token: anyone who can reach it could use the "
                        "models; give --token-file FILE, or listen on 127.0.0.1 behind a proxy")


def _named(spec: str) -> tuple[str, Path]:
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise DataError(f"--name takes NAME=DIR, got {spec!r}")
    return name, Path(folder)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
