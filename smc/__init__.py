"""SMC Dashboard: the data and clinical logic behind a phase I Safety Monitoring Committee's screens."""

__version__ = "0.1.0"

import pandas as pd

# Copy-on-write: a frame derived from another (a filter, a slice, a column pick) never writes back into it. The
# app's caches share loaded frames between sessions (smc.ui), so a page editing a slice must not change them.
pd.set_option("mode.copy_on_write", True)


class SettingError(ValueError):
    """An environment variable that overrides a setting (smc.settings) does not parse. Defined here, outside
    smc.settings, so that what starts the app can catch it while smc.settings is being imported."""
