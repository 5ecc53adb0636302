"""``tuneforge keygen`` and ``tuneforge sign``: key pairs and signatures for bundles."""

from __future__ import annotations

import click

EXAMPLE = """\b
Examples:
  tuneforge keygen keys/release           # keys/release.pem (0600) + keys/release.pub.pem
  tuneforge export RUN --sign keys/release.pem
  tuneforge sign exports/support-intents/v3 --key keys/release.pem
  tuneforge predict exports/support-intents/v3 --trust keys/release.pub.pem --text "hi"

See docs/export.md (Signed bundles)."""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--public", "public_path", type=click.Path(dir_okay=False),
                  help="Where the public key goes (default: PATH with .pub.pem).")
    def keygen(path, public_path):
        """Write a new Ed25519 key pair for signing bundles (private key mode 0600)."""
        from ..export.signing import generate_keypair, key_id, load_private_key

        private, public = generate_keypair(path, public_path)
        click.echo(f"private key: {private} (keep it secret; sign with --sign {private})")
        click.echo(f"public key:  {public} (give it to loaders: --trust {public})")
        click.echo(f"key id:      {key_id(load_private_key(private).public_key())}")

    @cli.command(epilog=EXAMPLE)
    @click.argument("bundle", type=click.Path(exists=True, file_okay=False))
    @click.option("--key", "key", required=True, type=click.Path(dir_okay=False),
                  help="Ed25519 private key (PEM), as written by `tuneforge keygen`.")
    def sign(bundle, key):
        """Sign an exported bundle's manifest (writes manifest.sig); verifies its files first."""
        from ..export.bundle import resolve_bundle_dir, verify_bundle
        from ..export.signing import sign_bundle

        root = resolve_bundle_dir(bundle)
        verify_bundle(root)   # never vouch for a bundle that already fails its hashes
        click.echo(f"signed: {sign_bundle(root, key)}")
