import sys

from trainer.mxnet_engine.options import parse_args, validate

# refuse a bad command line in a blink, before MXNet's seconds-long import
args, explicit = parse_args(sys.argv[1:])
try:
    validate(args, explicit)
except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

from trainer.mxnet_engine.engine import main  # noqa: E402

sys.exit(main())
