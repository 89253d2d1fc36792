import sys

from trainer.options import GLUON_ARCHS, parse_args, validate

# refuse a bad command line in a blink, before MXNet's seconds-long import
args, explicit = parse_args(sys.argv[1:], "mxnet", GLUON_ARCHS)
try:
    validate(args, explicit, "mxnet", GLUON_ARCHS)
except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

from trainer.mxnet_engine.engine import main  # noqa: E402

sys.exit(main())
