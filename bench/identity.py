"""A development identity provider for JWT identity, on this machine only:

    python3 -m bench.identity DIR          # the `serve` flags that trust it, one a line
    python3 -m bench.identity DIR USER...  # a token for each user, valid for an hour

The ES256 key is made in DIR/key.pem the first time (readable by its owner only) and its JWKS
written to DIR/jwks.json. bench/fuzz uses it too. A real deployment points --auth-jwks at its
identity provider's keys instead."""
import sys

from bench.lib import Identity


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    identity = Identity.kept(sys.argv[1])
    print("\n".join(identity.token(user) for user in sys.argv[2:]) or "\n".join(identity.server_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
