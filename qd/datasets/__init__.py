"""Builders of course-shaped data folders: the synthetic set, Google's bitmaps, the vendored real drawings."""
