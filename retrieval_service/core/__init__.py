"""The core every layer shares: settings machinery, errors, types, geo math, media, tables."""
