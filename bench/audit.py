"""The database audit of one coupon, for shell scripts (bench/ab/commits.sh):

    DATABASE_URL=... python3 -m bench.audit COUPON_ID

prints `quantity Q, counter C, rows R, held H, users U: clean` (or the violations after the colon)
and exits 0 when clean, 3 when not (1 is Python's own exit for an error, 2 a wrong call or a missing
coupon). The audit itself is audit_coupon() (migrations/functions/audit_coupon.sql), read by `audit`
in bench/lib.py."""
import sys

from bench.lib import audit


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    try:
        result = audit(int(sys.argv[1]))
    except LookupError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{result}: {'; '.join(result.violations()) or 'clean'}")
    return 0 if result.clean else 3


if __name__ == "__main__":
    sys.exit(main())
