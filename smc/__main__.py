import sys

from smc import SettingError

try:
    from smc.cli import main
except SettingError as exc:  # the limits are read as smc.settings is imported
    sys.exit(f"error: {exc}")

sys.exit(main())
